"""manifests/ holds what the cluster contract (ARCHITECTURE.md, "Cluster mode") names, and its CRDs are
crds/ itself: scripts/gen-manifest-crds copies them, and a copy that differs by one byte fails here.

Rendering, schema validation and `kubectl apply -k` are tests/e2e/test_manifests.py (they run kubectl)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "manifests" / "base"


def _docs(*names: str) -> list[dict[str, Any]]:
    return [d for n in names for d in yaml.safe_load_all((BASE / n).read_text()) if d]


def _one(kind: str, name: str) -> dict[str, Any]:
    docs = _docs(*(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"))
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_crds_are_copies_of_crds_dir() -> None:
    sources = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (BASE / "crds").glob("*.yaml") if p.name != "kustomization.yaml")
    assert copies == sources, "run scripts/gen-manifest-crds"
    for name in sources:
        assert (BASE / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), \
            f"manifests/base/crds/{name} differs from crds/{name}: run scripts/gen-manifest-crds"
    listed = yaml.safe_load((BASE / "crds" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sources


def test_every_base_file_is_a_resource() -> None:
    files = {p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"}
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    assert listed == files | {"crds"}


def test_stream_contract() -> None:
    """APIService v1alpha1.streams.k3c.io → Service k3c-system/k3c-agent:443 → the agents' port 6444."""
    api = _one("APIService", "v1alpha1.streams.k3c.io")["spec"]
    assert (api["group"], api["version"]) == ("streams.k3c.io", "v1alpha1")
    assert api["service"] == {"name": "k3c-agent", "namespace": "k3c-system", "port": 443}
    svc = _one("Service", "k3c-agent")
    assert svc["metadata"]["namespace"] == "k3c-system"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(443, 6444)]
    pod = _one("DaemonSet", "k3c-agent")["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    agent = pod["spec"]["containers"][0]
    assert [p["containerPort"] for p in agent["ports"]] == [6444, 6445]  # the streams, the webhooks
    assert agent["readinessProbe"]["httpGet"]["port"] == 6444 and agent["livenessProbe"]["httpGet"]["port"] == 6444


def test_agent_pod_runs_as_a_node_agent() -> None:
    """Privileged, host PID (containerd started in the host's namespaces), its node from the downward API,
    the ServiceAccount the roles are bound to, and Bidirectional propagation where the builder mounts."""
    pod = _one("DaemonSet", "k3c-agent")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "k3c-agent" and pod["hostPID"] is True
    agent = pod["containers"][0]
    assert agent["securityContext"]["privileged"] is True
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "--node-name=$(NODE_NAME)" in agent["args"]
    # the webhooks on the pod's IP, which the API server reaches (registered per node with that address)
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert "--webhook-listen=$(POD_IP):6445" in agent["args"]
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)
    for name in ("root-dir", "state-dir"):
        assert mounts[name]["mountPropagation"] == "Bidirectional"
    assert volumes["node-runtime"]["hostPath"]["path"] == "/run/containerd"


def test_roles_bind_the_agent_and_aggregate_for_users() -> None:
    bindings = _docs("rbac-agent.yaml", "rbac-aggregation.yaml")
    subject = {"kind": "ServiceAccount", "name": "k3c-agent", "namespace": "k3c-system"}
    refs = {(b["kind"], b["metadata"].get("namespace", ""), b["roleRef"]["name"])
            for b in bindings if b["kind"].endswith("Binding") and b["subjects"] == [subject]}
    assert refs == {("ClusterRoleBinding", "", "k3c-agent"), ("RoleBinding", "k3c-system", "k3c-agent"),
                    ("RoleBinding", "kube-system", "k3c-agent"),
                    ("RoleBinding", "kube-system", "extension-apiserver-authentication-reader"),
                    ("ClusterRoleBinding", "", "system:auth-delegator")}
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    view, edit = _one("ClusterRole", "k3c-view"), _one("ClusterRole", "k3c-edit")
    assert {k for k in view["metadata"]["labels"] if k.startswith(aggregate)} == \
        {aggregate + r for r in ("view", "edit", "admin")}
    assert {k for k in edit["metadata"]["labels"] if k.startswith(aggregate)} == \
        {aggregate + r for r in ("edit", "admin")}
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    for rule in view["rules"]:
        assert not writes & set(rule["verbs"]), rule
        assert not {"localcontainers/exec", "localcontainers/attach"} & set(rule["resources"]), rule
    agent = _one("ClusterRole", "k3c-agent")
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in agent["rules"])


def test_the_agents_image_is_this_versions() -> None:
    """The DaemonSet runs the image scripts/build-agent-image tags and `k3c install` sets by default."""
    from k3c import __version__

    agent = _one("DaemonSet", "k3c-agent")["spec"]["template"]["spec"]["containers"][0]
    assert agent["image"] == f"k3c.local/k3c-agent:{__version__}"
    assert agent["imagePullPolicy"] == "IfNotPresent"  # imported into the node runtime, never pulled
