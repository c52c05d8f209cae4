"""The RBAC roles and bindings kube-apiserver creates at start, with kube's rules, for the ones k3c's users need.

``cluster-admin`` (bound to ``system:masters``), the user-facing ``admin``/``edit``/``view`` (aggregated from
the ``rbac.authorization.k8s.io/aggregate-to-*`` labels, so a CRD's roles join them, as k3c's
``k3c-edit``/``k3c-view`` do), the roles every authenticated user is bound to (``system:discovery``,
``system:basic-user``, ``system:public-info-viewer``), ``system:auth-delegator`` for aggregated API servers,
and the Role reading ``kube-system/extension-apiserver-authentication``. Like kube's, each carries
``rbac.authorization.kubernetes.io/autoupdate: "true"``: at every start a missing one is created and one that
lost a rule or a subject gets it back; set the annotation to ``"false"`` to keep your own edit.
"""

from __future__ import annotations

import copy
from typing import Any

from k3c.apiserver import lifecycle
from k3c.apiserver.rbac import GROUP, Rule, rules_of
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.storage import Store

API_VERSION = f"{GROUP}/v1"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
_RW = ("create", "delete", "deletecollection", "patch", "update")
_READ = ("get", "list", "watch")


def _r(groups: str, resources: str, verbs: tuple[str, ...], names: str = "") -> dict[str, Any]:
    """A resource rule; groups and resources space-separated (``core`` for the core group)."""
    rule = Rule(verbs, tuple("" if g == "core" else g for g in groups.split()), tuple(resources.split()),
                tuple(names.split()))
    return rule.to_dict()


def _urls(paths: str, verbs: tuple[str, ...] = ("get",)) -> dict[str, Any]:
    return Rule(verbs, non_resource_urls=tuple(paths.split())).to_dict()


_AGGREGATE_TO_ADMIN = [
    _r("authorization.k8s.io", "localsubjectaccessreviews", ("create",)),
    _r(GROUP, "rolebindings roles", (*_RW[:3], "get", "list", "patch", "update", "watch")),
]
_AGGREGATE_TO_EDIT = [
    _r("core", "pods/attach pods/exec pods/portforward pods/proxy secrets services/proxy", _READ),
    _r("core", "serviceaccounts", ("impersonate",)),
    _r("core", "pods pods/attach pods/exec pods/portforward pods/proxy", _RW),
    _r("core", "pods/eviction", ("create",)),
    _r("core", "configmaps events persistentvolumeclaims replicationcontrollers replicationcontrollers/scale "
               "secrets serviceaccounts services services/proxy", _RW),
    _r("core", "serviceaccounts/token", ("create",)),
    _r("apps", "daemonsets deployments deployments/rollback deployments/scale replicasets replicasets/scale "
               "statefulsets statefulsets/scale", _RW),
    _r("autoscaling", "horizontalpodautoscalers", _RW),
    _r("batch", "cronjobs jobs", _RW),
    _r("extensions", "daemonsets deployments deployments/rollback deployments/scale ingresses networkpolicies "
                     "replicasets replicasets/scale replicationcontrollers/scale", _RW),
    _r("policy", "poddisruptionbudgets", _RW),
    _r("networking.k8s.io", "ingresses networkpolicies", _RW),
    _r("coordination.k8s.io", "leases", (*_RW[:3], "get", "list", "patch", "update", "watch")),
]
_AGGREGATE_TO_VIEW = [
    _r("core", "configmaps endpoints persistentvolumeclaims persistentvolumeclaims/status pods "
               "replicationcontrollers replicationcontrollers/scale serviceaccounts services services/status", _READ),
    _r("core", "bindings events limitranges namespaces/status pods/log pods/status replicationcontrollers/status "
               "resourcequotas resourcequotas/status", _READ),
    _r("core", "namespaces", _READ),
    _r("discovery.k8s.io", "endpointslices", _READ),
    _r("apps", "controllerrevisions daemonsets daemonsets/status deployments deployments/scale deployments/status "
               "replicasets replicasets/scale replicasets/status statefulsets statefulsets/scale "
               "statefulsets/status", _READ),
    _r("autoscaling", "horizontalpodautoscalers horizontalpodautoscalers/status", _READ),
    _r("batch", "cronjobs cronjobs/status jobs jobs/status", _READ),
    _r("extensions", "daemonsets daemonsets/status deployments deployments/scale deployments/status ingresses "
                     "ingresses/status networkpolicies replicasets replicasets/scale replicasets/status "
                     "replicationcontrollers/scale", _READ),
    _r("policy", "poddisruptionbudgets poddisruptionbudgets/status", _READ),
    _r("networking.k8s.io", "ingresses ingresses/status networkpolicies", _READ),
]


def _meta(name: str, labels: dict[str, str] | None = None, namespace: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
                            "annotations": {AUTOUPDATE: "true"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _cluster_role(name: str, rules: list[dict[str, Any]] | None = None, aggregate_from: str = "",
                  aggregate_to: str = "") -> dict[str, Any]:
    labels = {f"{AGGREGATE_TO}{aggregate_to}": "true"} if aggregate_to else None
    obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": _meta(name, labels)}
    if aggregate_from:
        selector = {"matchLabels": {f"{AGGREGATE_TO}{aggregate_from}": "true"}}
        obj["aggregationRule"] = {"clusterRoleSelectors": [selector]}
    obj["rules"] = rules or []
    return obj


def _subject(kind: str, name: str) -> dict[str, str]:
    return {"kind": kind, "apiGroup": GROUP, "name": name}


def _cluster_binding(role: str, *groups: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": _meta(role),
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [_subject("Group", g) for g in groups]}


AUTH_READER = "extension-apiserver-authentication-reader"

CLUSTER_ROLES: list[dict[str, Any]] = [
    _cluster_role("cluster-admin", [_r("*", "*", ("*",)), _urls("*", ("*",))]),
    _cluster_role("admin", aggregate_from="admin"),
    _cluster_role("edit", aggregate_from="edit", aggregate_to="admin"),
    _cluster_role("view", aggregate_from="view", aggregate_to="edit"),
    _cluster_role("system:aggregate-to-admin", _AGGREGATE_TO_ADMIN, aggregate_to="admin"),
    _cluster_role("system:aggregate-to-edit", _AGGREGATE_TO_EDIT, aggregate_to="edit"),
    _cluster_role("system:aggregate-to-view", _AGGREGATE_TO_VIEW, aggregate_to="view"),
    _cluster_role("system:auth-delegator", [_r("authentication.k8s.io", "tokenreviews", ("create",)),
                                            _r("authorization.k8s.io", "subjectaccessreviews", ("create",))]),
    _cluster_role("system:basic-user", [
        _r("authorization.k8s.io", "selfsubjectaccessreviews selfsubjectrulesreviews", ("create",)),
        _r("authentication.k8s.io", "selfsubjectreviews", ("create",))]),
    _cluster_role("system:discovery", [_urls("/api /api/* /apis /apis/* /healthz /livez /openapi /openapi/* "
                                             "/readyz /version /version/")]),
    _cluster_role("system:public-info-viewer", [_urls("/healthz /livez /readyz /version /version/")]),
]
CLUSTER_ROLE_BINDINGS: list[dict[str, Any]] = [
    _cluster_binding("cluster-admin", "system:masters"),
    _cluster_binding("system:basic-user", "system:authenticated"),
    _cluster_binding("system:discovery", "system:authenticated"),
    _cluster_binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
]
ROLES: list[dict[str, Any]] = [
    {"apiVersion": API_VERSION, "kind": "Role", "metadata": _meta(AUTH_READER, namespace="kube-system"),
     "rules": [_r("core", "configmaps", _READ, "extension-apiserver-authentication")]},
]
ROLE_BINDINGS: list[dict[str, Any]] = [
    {"apiVersion": API_VERSION, "kind": "RoleBinding",
     "metadata": _meta(f"system::{AUTH_READER}", namespace="kube-system"),
     "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": AUTH_READER},
     "subjects": [_subject("User", "system:kube-controller-manager"), _subject("User", "system:kube-scheduler")]},
]


async def ensure(store: Store, registry: ResourceTypes) -> None:
    """Create what is missing; give back to an object marked autoupdate the rules or subjects it lost."""
    for plural, objs in (("clusterroles", CLUSTER_ROLES), ("clusterrolebindings", CLUSTER_ROLE_BINDINGS),
                         ("roles", ROLES), ("rolebindings", ROLE_BINDINGS)):
        rtype = registry.lookup(GROUP, "v1", plural)
        assert rtype is not None
        for want in objs:
            meta = want["metadata"]
            namespace = meta.get("namespace")
            key = rtype.key(namespace, meta["name"])
            cur = store.get(key)
            if cur is None:
                obj = copy.deepcopy(want)
                lifecycle.prepare_create(rtype, obj, namespace)
                await store.create(key, obj)
            elif (cur.obj["metadata"].get("annotations") or {}).get(AUTOUPDATE) == "true":
                repaired = _repaired(cur.obj, want)
                if repaired is not None:
                    await store.update(key, repaired, expect=cur.revision)


def _repaired(cur: dict[str, Any], want: dict[str, Any]) -> dict[str, Any] | None:
    """``cur`` with the rules, aggregation rule and subjects of ``want`` it lacks (kube's reconciliation adds,
    it never removes); None when nothing lacks."""
    obj = copy.deepcopy(cur)
    changed = False
    if "rules" in want and not want.get("aggregationRule"):
        have = set(rules_of(cur))
        missing = [r for r in want["rules"] if Rule.of(r) not in have]
        if missing:
            obj["rules"] = list(cur.get("rules") or []) + missing
            changed = True
    if want.get("aggregationRule") and not cur.get("aggregationRule"):
        obj["aggregationRule"] = want["aggregationRule"]
        changed = True
    if "subjects" in want:
        subjects = list(cur.get("subjects") or [])
        for s in want["subjects"]:
            if not any(o.get("kind") == s["kind"] and o.get("name") == s["name"] for o in subjects):
                subjects.append(s)
                changed = True
        obj["subjects"] = subjects
    return obj if changed else None
