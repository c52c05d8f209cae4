"""manifests/ as a cluster sees it: `kubectl kustomize` renders the base and each overlay, every object is
valid for Kubernetes 1.27 and 1.33 (kubernetes-validate's strict schemas: an unknown field fails), and
`kubectl apply -k` (oldest and newest kubectl) succeeds against k3c's own API server, which serves the
built-ins they use as storage-only kinds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.harness import run_kubectl

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
#: every kustomization a user may apply, and the node runtime's socket directory each one mounts
TARGETS = {"manifests": ("", "/run/containerd"), "base": ("base", "/run/containerd"),
           "k3s": ("overlays/k3s", "/run/k3s/containerd"), "containerd": ("overlays/containerd", "/run/containerd")}
KUBE_VERSIONS = ("1.27.0", "1.33.0")


def render(target: str) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS / TARGETS[target][0])], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _daemonset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "DaemonSet")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_renders_everything_with_the_runtime_socket(target: str) -> None:
    docs = render(target)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["APIService", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "DaemonSet",
                     "Namespace", "Role", "RoleBinding", "Service", "ServiceAccount"]
    crds = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert crds == {f"{yaml.safe_load(p.read_text())['spec']['names']['plural']}.k3c.io"
                    for p in (REPO / "crds").glob("*.yaml")}
    volumes = {v["name"]: v for v in _daemonset(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["node-runtime"]["hostPath"]["path"] == TARGETS[target][1]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_object_validates_strictly(target: str, version: str) -> None:
    for doc in render(target):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_validation_rejects_an_unknown_field(version: str) -> None:
    """The check above can fail: a misspelt field of the agent's pod is refused."""
    ds = _daemonset(render("k3s"))
    ds["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="hostPid"):
        kubernetes_validate.validate(ds, version, strict=True)


def test_apply_k_onto_the_embedded_api_server(kubectl: str, apiserver: Any) -> None:
    for target in ("", "overlays/k3s"):  # the top (stock containerd), then k3s's socket
        cp = run_kubectl(kubectl, apiserver.kubeconfig, "apply", "-k", str(MANIFESTS / target))
        assert "daemonset.apps/k3c-agent" in cp.stdout, cp.stdout + cp.stderr
    ds = json.loads(run_kubectl(kubectl, apiserver.kubeconfig, "get", "daemonset", "k3c-agent", "-n", "k3c-system",
                                "-o", "json").stdout)
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes["node-runtime"]["hostPath"]["path"] == "/run/k3s/containerd"
    api = json.loads(run_kubectl(kubectl, apiserver.kubeconfig, "get", "apiservice", "v1alpha1.streams.k3c.io",
                                 "-o", "json").stdout)
    assert api["spec"]["service"] == {"name": "k3c-agent", "namespace": "k3c-system", "port": 443}
    crds = run_kubectl(kubectl, apiserver.kubeconfig, "get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/localcontainers.k3c.io" in crds
    again = run_kubectl(kubectl, apiserver.kubeconfig, "apply", "-k", str(MANIFESTS / "overlays/k3s"))
    assert "configured" not in again.stdout and "created" not in again.stdout, again.stdout
