"""The node policy, field by field: every spec field of every k3c kind is classified, and what a restricted
policy refuses (or allows) is decided by that classification alone.

The walk below fails for a field added to a CRD without a classification, which is how fields added later
(devices, a host PID namespace, an unconfined seccomp profile) come to be governed: unclassified fields are
governed at run time too (see the last tests).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from k3c.crds import manifests
from k3c.reconcilers import nodepolicy
from k3c.reconcilers.nodepolicy import Policy

#: Kinds whose objects are configuration for the policy itself, not requests to the node.
NOT_GOVERNED = {"NodePolicy"}


def _crds() -> dict[str, dict[str, Any]]:
    out = {}
    for path in manifests():
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        out[kind] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return out


def _unclassified(table: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    if path in table:
        return []
    props = schema.get("properties")
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict) and "properties" in schema["items"]:
        return _unclassified(table, schema["items"], path + "[]")
    if props:
        return [p for name, sub in props.items() for p in _unclassified(table, sub, f"{path}.{name}")]
    return [path]


@pytest.mark.parametrize("kind", sorted(set(_crds()) - NOT_GOVERNED))
def test_every_spec_field_is_classified(kind: str) -> None:
    spec = _crds()[kind].get("properties", {}).get("spec", {})
    table = nodepolicy.FIELDS.get(kind)
    assert table is not None, f"{kind} has no field classification in k3c/reconcilers/nodepolicy.py"
    assert _unclassified(table, spec, "spec") == [], (
        f"classify these {kind} fields in k3c/reconcilers/nodepolicy.py (safe or governed)")


RESTRICTED = Policy.from_flags("restricted", allow=(), host_paths=("/srv/shared",))
PERMISSIVE = Policy.from_flags("permissive")
SOURCE = "(k3c daemon --node-policy=restricted)"


def lc(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer",
            "metadata": {"name": "x", "namespace": "team"}, "spec": {"image": "busybox", **spec}}


@pytest.mark.parametrize("spec, rule", [
    ({"privileged": True}, "spec.privileged"),
    ({"capAdd": ["SYS_ADMIN"]}, "spec.capAdd"),
    ({"hostNetwork": True}, "spec.hostNetwork"),
    ({"volumes": [{"volume": "data", "mountPath": "/d"}, {"hostPath": "/etc", "mountPath": "/e"}]},
     "spec.volumes[1].hostPath"),
    ({"volumes": [{"hostPath": "/srv/shared/../../etc", "mountPath": "/e"}]}, "spec.volumes[0].hostPath"),
    ({"devices": [{"hostPath": "/dev/sda"}]}, "spec.devices"),
    ({"seccompProfile": "unconfined"}, "spec.seccompProfile"),
    ({"apparmorProfile": "unconfined"}, "spec.apparmorProfile"),
    ({"pidMode": "host"}, "spec.pidMode"),
    ({"ipcMode": "host"}, "spec.ipcMode"),
    ({"hostPID": True}, "spec.hostPID"),  # not classified (no such field): governed by default
])
def test_restricted_refuses_governed_fields_naming_the_rule(spec: dict[str, Any], rule: str) -> None:
    refusal = nodepolicy.refusal("LocalContainer", lc(**spec), None, [PERMISSIVE, RESTRICTED])
    assert refusal is not None and refusal.startswith(f"node policy: {rule} ") and refusal.endswith(SOURCE), refusal
    assert nodepolicy.refusal("LocalContainer", lc(**spec), None, [PERMISSIVE]) is None


@pytest.mark.parametrize("spec", [
    {}, {"privileged": False, "capAdd": [], "hostNetwork": False, "capDrop": ["ALL"]},
    {"volumes": [{"hostPath": "/srv/shared/data", "mountPath": "/d", "readOnly": True}]},
    {"env": [{"name": "A", "value": "b"}], "ports": [{"containerPort": 80, "hostPort": 8080}], "user": "0"},
    {"pidMode": "", "ipcMode": "private", "seccompProfile": "", "noNewPrivileges": True,
     "tmpfs": [{"mountPath": "/run", "options": "size=1m"}], "ulimits": [{"name": "nofile", "soft": 10, "hard": 10}],
     "extraHosts": [{"name": "db", "ip": "host-gateway"}]},
])
def test_restricted_allows_safe_fields_and_allowed_paths(spec: dict[str, Any]) -> None:
    assert nodepolicy.refusal("LocalContainer", lc(**spec), None, [RESTRICTED]) is None


def test_allow_list_opens_one_field_only() -> None:
    policy = Policy.from_flags("restricted", allow=("LocalContainer.spec.privileged",))
    assert nodepolicy.refusal("LocalContainer", lc(privileged=True), None, [policy]) is None
    assert "spec.hostNetwork" in (nodepolicy.refusal("LocalContainer", lc(hostNetwork=True), None, [policy]) or "")


def test_update_refuses_only_what_it_changes() -> None:
    old = lc(privileged=True, state="Running")
    new = lc(privileged=True, state="Stopped")
    assert nodepolicy.refusal("LocalContainer", new, old, [RESTRICTED]) is None
    assert nodepolicy.refusal("LocalContainer", lc(privileged=True, hostNetwork=True), old, [RESTRICTED]) == (
        f"node policy: spec.hostNetwork is not allowed {SOURCE}")


def build(context: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild", "metadata": {"name": "b", "namespace": "team"},
            "spec": {"context": context, **spec}}


@pytest.mark.parametrize("context, extra, rule", [
    ({"dir": "/home/me/app"}, {}, "spec.context.dir"),
    ({"git": {"url": "file:///root/secret-repo"}}, {}, "spec.context.git.url"),
    ({"git": {"url": "/root/secret-repo"}}, {}, "spec.context.git.url"),
    ({"upload": {"digest": "sha256:" + "0" * 64}}, {"network": "host"}, "spec.network"),
])
def test_build_contexts_from_the_node_are_governed(context: dict[str, Any], extra: dict[str, Any], rule: str) -> None:
    refusal = nodepolicy.refusal("ImageBuild", build(context, **extra), None, [RESTRICTED])
    assert refusal is not None and refusal.startswith(f"node policy: {rule} "), refusal


@pytest.mark.parametrize("context", [
    {"git": {"url": "https://example.com/app.git", "ref": "main"}}, {"dir": "/srv/shared/app"},
    {"upload": {"digest": "sha256:" + "0" * 64}}, {"git": {"url": "git@example.com:app.git"}},
])
def test_remote_and_uploaded_contexts_are_safe(context: dict[str, Any]) -> None:
    assert nodepolicy.refusal("ImageBuild", build(context, network="none", tags=["a"]), None, [RESTRICTED]) is None


def image(auth: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"reference": "busybox"}
    if auth is not None:
        spec["authSecret"] = auth
    return {"apiVersion": "k3c.io/v1alpha1", "kind": "Image", "metadata": {"name": "i"}, "spec": spec}


def test_auth_secret_only_from_the_credentials_namespace() -> None:
    assert nodepolicy.refusal("Image", image(None), None, [RESTRICTED]) is None
    assert nodepolicy.refusal("Image", image({"name": "k3c-registry-auth"}), None, [RESTRICTED]) is None
    assert nodepolicy.refusal("Image", image({"namespace": "kube-system", "name": "x"}), None, [RESTRICTED]) is None
    refusal = nodepolicy.refusal("Image", image({"namespace": "team", "name": "theirs"}), None, [RESTRICTED])
    assert refusal == (f'node policy: spec.authSecret may only name Secrets in namespace "kube-system" {SOURCE}')
    other = Policy.from_flags("restricted", credentials_namespace="registry-creds")
    assert nodepolicy.refusal("ImagePush", {"kind": "ImagePush", "metadata": {"name": "p"}, "spec": {
        "image": "a", "authSecret": {"namespace": "registry-creds", "name": "c"}}}, None, [other]) is None


def test_policy_object() -> None:
    obj = {"apiVersion": "k3c.io/v1alpha1", "kind": "NodePolicy", "metadata": {"name": "default"},
           "spec": {"mode": "restricted", "allow": ["LocalContainer.spec.capAdd"], "hostPaths": ["/data"]}}
    policy = Policy.from_object(obj)
    assert policy.restricted and policy.source == '(k3c.io/v1alpha1 NodePolicy "default")'
    assert nodepolicy.refusal("LocalContainer", lc(capAdd=["NET_ADMIN"]), None, [policy]) is None
    assert nodepolicy.refusal("LocalContainer", lc(privileged=True), None, [policy]) == (
        'node policy: spec.privileged is not allowed (k3c.io/v1alpha1 NodePolicy "default")')
