"""The resource types the server knows: the built-in ones and one per served version of every CRD.

A `ResourceType` is everything the HTTP layer, discovery, OpenAPI and tables need to know about one
group/version/resource. Built-ins are declared here; CRD-backed ones are derived from the stored
CustomResourceDefinition objects by `from_crd`, so the CRD YAML stays the single source of truth.

Most built-ins are served from Kubernetes' own schemas (`kube_schema`, see `kubeschemas`): one
`_kube(...)` line each. Those k3c stores but nothing here acts on (no scheduler, no controllers, no
kube-proxy) are `stored_only`: every write of one answers with a `Warning` saying so, and discovery
lists them in the category `stored-only` (`kubectl get stored-only -A`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class PrinterColumn:
    """One `additionalPrinterColumns` entry: what `kubectl get` shows for this resource."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


STORED_ONLY_CATEGORY = "stored-only"


@dataclass(frozen=True)
class StoredOnly:
    """A built-in kind k3c stores and serves while no component here acts on it.

    `nothing` says what does not happen to it here ("runs it", "routes to it"), `hint` what to use instead.
    """

    nothing: str = "runs it"
    hint: str = "use a LocalContainer to run a container"


@dataclass
class ResourceType:
    """One served group/version/resource."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    list_kind: str = ""
    # `status` when the status subresource is enabled (custom resources and some built-ins).
    has_status: bool = False
    # Extra subresources served by other parts of k3c (e.g. LocalContainer `log`, `exec`).
    extra_subresources: list[str] = field(default_factory=list)
    # openAPIV3Schema of this version (None means "anything goes", as for built-ins here).
    schema: dict[str, Any] | None = None
    printer_columns: list[PrinterColumn] = field(default_factory=list)
    # Storage key of the stored form: all versions of a CRD share one (no conversion: same shape).
    storage_resource: str = ""
    # Whether spec changes bump metadata.generation (custom resources and most built-ins: yes).
    tracks_generation: bool = True
    # Whether strategic merge patch is accepted (built-ins only, as in kube-apiserver).
    strategic_merge: bool = False
    # Merge keys of lists for strategic merge patch, by dotted path of the list (e.g. "metadata.ownerReferences").
    merge_keys: dict[str, str] = field(default_factory=dict)
    verbs: list[str] = field(default_factory=lambda: list(ALL_VERBS))
    # Served from Kubernetes' own definitions (`kubeschemas`): OpenAPI, unknown-field pruning, merge keys.
    kube_schema: bool = False
    stored_only: StoredOnly | None = None

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.list_kind:
            self.list_kind = self.kind + "List"
        if not self.storage_resource:
            self.storage_resource = f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def qualified(self) -> str:
        """`plural.group` as kube-apiserver names a resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def status_subresource(self) -> bool:
        """Whether status is written only through `/status` (custom resources and kube-schema built-ins)."""
        return self.has_status and (bool(self.group) or self.kube_schema)

    def strategic_merge_keys(self) -> dict[str, str]:
        """The list rules of strategic merge patch: declared, or read from Kubernetes' schema."""
        if self.kube_schema:
            from k3c.apiserver import kubeschemas, openapi

            return kubeschemas.merge_keys(openapi.model_name(self.group, self.version, self.kind))
        return self.merge_keys

    def stored_only_warning(self) -> str | None:
        """The `Warning` every write of a stored-only kind answers with, as kubectl prints it."""
        if self.stored_only is None:
            return None
        words = f"{self.group_version} {self.kind} is stored only: nothing {self.stored_only.nothing} on k3c's " \
                "embedded API server"
        return f"{words}; {self.stored_only.hint}" if self.stored_only.hint else words

    def key(self, namespace: str | None, name: str) -> str:
        """Storage key; namespaced resources sort by namespace first so a namespace lists by prefix."""
        if self.namespaced:
            return f"/{self.storage_resource}/{namespace}/{name}"
        return f"/{self.storage_resource}/{name}"

    def prefix(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"/{self.storage_resource}/{namespace}/"
        return f"/{self.storage_resource}/"


_META_MERGE_KEYS = {"metadata.ownerReferences": "uid", "metadata.finalizers": ""}
_SCHEMAS = Path(__file__).resolve().parent / "schemas"


@cache
def builtin_schema(name: str) -> dict[str, Any]:
    """The structural schema of a built-in kind served with one (``schemas/<name>.yaml``)."""
    doc: dict[str, Any] = yaml.safe_load((_SCHEMAS / f"{name}.yaml").read_text())
    return doc

BUILTINS: list[ResourceType] = [
    ResourceType(
        group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False,
        short_names=["ns"], has_status=True, strategic_merge=True, merge_keys=dict(_META_MERGE_KEYS),
        tracks_generation=False,
    ),
    ResourceType(
        group="", version="v1", plural="configmaps", kind="ConfigMap", namespaced=True,
        short_names=["cm"], strategic_merge=True, merge_keys=dict(_META_MERGE_KEYS), tracks_generation=False,
    ),
    ResourceType(
        group="", version="v1", plural="secrets", kind="Secret", namespaced=True,
        strategic_merge=True, merge_keys=dict(_META_MERGE_KEYS), tracks_generation=False,
    ),
    ResourceType(
        group="", version="v1", plural="events", kind="Event", namespaced=True,
        short_names=["ev"], strategic_merge=True, merge_keys=dict(_META_MERGE_KEYS), tracks_generation=False,
    ),
    ResourceType(
        group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions",
        kind="CustomResourceDefinition", namespaced=False, short_names=["crd", "crds"],
        categories=["api-extensions"], has_status=True, strategic_merge=False,
    ),
    # The admission path's configuration (k3c/apiserver/admission.py); a schema, so it is pruned, defaulted
    # and validated like a custom resource (plus webhookconfig.validate's rules).
    ResourceType(
        group="admissionregistration.k8s.io", version="v1", plural="validatingwebhookconfigurations",
        kind="ValidatingWebhookConfiguration", namespaced=False, categories=["api-extensions"],
        strategic_merge=True, merge_keys={**_META_MERGE_KEYS, "webhooks": "name"},
        schema=builtin_schema("validatingwebhookconfiguration"),
    ),
]


def _kube(
    group: str, plural: str, kind: str, *, namespaced: bool = True, short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (), status: bool = False, generation: bool = False,
    stored_only: StoredOnly | None = None, version: str = "v1", verbs: tuple[str, ...] = tuple(ALL_VERBS),
    subresources: tuple[str, ...] = (),
) -> ResourceType:
    """A built-in served from Kubernetes' own schema, with kube-apiserver's names, scope and categories."""
    cats = list(categories) + ([STORED_ONLY_CATEGORY] if stored_only else [])
    return ResourceType(
        group=group, version=version, plural=plural, kind=kind, namespaced=namespaced, short_names=list(short),
        categories=cats, has_status=status, tracks_generation=generation, strategic_merge=True,
        kube_schema=True, stored_only=stored_only, verbs=list(verbs), extra_subresources=list(subresources),
    )


_RUNS = StoredOnly()
_ROUTES = StoredOnly("routes to it", "publish a LocalContainer's ports (`k3c run -p`) to reach a container")
_PROVISIONS = StoredOnly("provisions or binds it", "use a k3c Volume to keep a container's data")
_REGISTERS = StoredOnly("registers or runs it", "k3c's node is the machine `k3c daemon` runs on")
_ALL = ("all",)  # kube-apiserver's category of the workload kinds: `kubectl get all`

# Every kind of kubectl's default prune allowlist (kubectl 1.27-1.33: staging/src/k8s.io/kubectl/pkg/util/
# prune) that k3c does not serve above, plus what manifests for a cluster install use. All stored only.
STORED_ONLY: list[ResourceType] = [
    _kube("", "pods", "Pod", short=("po",), categories=_ALL, status=True, stored_only=_RUNS),
    _kube("", "replicationcontrollers", "ReplicationController", short=("rc",), categories=_ALL, status=True,
          generation=True, stored_only=_RUNS),
    _kube("", "services", "Service", short=("svc",), categories=_ALL, status=True, stored_only=_ROUTES),
    _kube("", "endpoints", "Endpoints", short=("ep",), stored_only=_ROUTES),
    _kube("", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True,
          stored_only=_PROVISIONS),
    _kube("", "persistentvolumes", "PersistentVolume", namespaced=False, short=("pv",), status=True,
          stored_only=_PROVISIONS),
    # `k3c install --runtime auto` reads a cluster's Nodes (status.nodeInfo.containerRuntimeVersion)
    _kube("", "nodes", "Node", namespaced=False, short=("no",), status=True, stored_only=_REGISTERS),
    _kube("apps", "deployments", "Deployment", short=("deploy",), categories=_ALL, status=True, generation=True,
          stored_only=_RUNS),
    _kube("apps", "replicasets", "ReplicaSet", short=("rs",), categories=_ALL, status=True, generation=True,
          stored_only=_RUNS),
    _kube("apps", "statefulsets", "StatefulSet", short=("sts",), categories=_ALL, status=True, generation=True,
          stored_only=_RUNS),
    _kube("apps", "daemonsets", "DaemonSet", short=("ds",), categories=_ALL, status=True, generation=True,
          stored_only=_RUNS),
    _kube("batch", "jobs", "Job", categories=_ALL, status=True, generation=True, stored_only=_RUNS),
    _kube("batch", "cronjobs", "CronJob", short=("cj",), categories=_ALL, status=True, generation=True,
          stored_only=_RUNS),
    _kube("networking.k8s.io", "ingresses", "Ingress", short=("ing",), status=True, generation=True,
          stored_only=_ROUTES),
]
BUILTINS += STORED_ONLY

_CREATE = ("create",)
# Served and acted on: ServiceAccount tokens (serviceaccounts.py), RBAC (rbac.py), aggregation (aggregator.py),
# the reviews (reviews.py).
BUILTINS += [
    _kube("", "serviceaccounts", "ServiceAccount", short=("sa",), subresources=("token",)),
    _kube("rbac.authorization.k8s.io", "roles", "Role"),
    _kube("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    _kube("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", namespaced=False),
    _kube("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _kube("apiregistration.k8s.io", "apiservices", "APIService", namespaced=False, categories=("api-extensions",),
          status=True),
    _kube("authentication.k8s.io", "tokenreviews", "TokenReview", namespaced=False, verbs=_CREATE),
    _kube("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview", namespaced=False, verbs=_CREATE),
    _kube("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", namespaced=False, verbs=_CREATE),
    _kube("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview", namespaced=False,
          verbs=_CREATE),
    _kube("authorization.k8s.io", "localsubjectaccessreviews", "LocalSubjectAccessReview", verbs=_CREATE),
    _kube("authorization.k8s.io", "selfsubjectrulesreviews", "SelfSubjectRulesReview", namespaced=False,
          verbs=_CREATE),
]


def from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The ResourceTypes a CRD serves: one per version with `served: true`."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group = spec.get("group", "")
    out = []
    for ver in spec.get("versions", []):
        if not ver.get("served", True):
            continue
        subresources = ver.get("subresources") or {}
        columns = [
            PrinterColumn(
                name=c.get("name", ""), type=c.get("type", "string"), json_path=c.get("jsonPath", ""),
                description=c.get("description", ""), priority=int(c.get("priority", 0) or 0),
                format=c.get("format", ""),
            )
            for c in ver.get("additionalPrinterColumns") or []
        ]
        out.append(
            ResourceType(
                group=group,
                version=ver["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", "") or names.get("kind", "").lower(),
                short_names=list(names.get("shortNames") or []),
                categories=list(names.get("categories") or []),
                list_kind=names.get("listKind", "") or names.get("kind", "") + "List",
                has_status="status" in subresources,
                schema=(ver.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=columns,
            )
        )
    return out
