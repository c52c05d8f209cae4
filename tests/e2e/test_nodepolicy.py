"""The node policy of a shared node, enforced at admission by the operator's webhook (nodepolicy.k3c.io).

A daemon started restricted (`k3c daemon --node-policy restricted`) refuses privileged containers, host
paths, the host network, added capabilities, build contexts from the node and foreign registry
credentials, each with a 403 naming the rule; the module's ordinary (permissive) daemon allows them, until
a NodePolicy object restricts it, and again once that object is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from k3c.api import IMAGE_BUILDS, IMAGES, LOCAL_CONTAINERS
from k3c.apierrors import Forbidden
from k3c.oci.layout import busybox_image
from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, lc_object
from tests.support.harness import run_kubectl, wait_until

pytestmark = pytest.mark.containerd

ALLOWED = "/srv/k3c-test-allowed"
FLAG_SOURCE = "(k3c daemon --node-policy=restricted)"
OBJECT_SOURCE = '(k3c.io/v1alpha1 NodePolicy "default")'


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("restricted"),
                      ["--node-policy", "restricted", "--node-policy-host-path", ALLOWED])
    try:
        d.start()
        d.import_image(TEST_IMAGE, busybox_image())
        yield d
    finally:
        leftovers = d.close()
    assert not leftovers, leftovers


def _dry_create(d: DaemonProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return d.api.request("POST", path + "?dryRun=All", body)  # type: ignore[no-any-return]


def _refusal(d: DaemonProcess, path: str, body: dict[str, Any]) -> str:
    with pytest.raises(Forbidden) as refused:
        d.api.create(path, body)
    assert refused.value.code == 403
    return refused.value.message


@pytest.mark.parametrize("spec, rule", [
    ({"privileged": True}, "spec.privileged"),
    ({"volumes": [{"hostPath": "/etc", "mountPath": "/host-etc"}]}, "spec.volumes[0].hostPath"),
    ({"hostNetwork": True}, "spec.hostNetwork"),
    ({"capAdd": ["SYS_ADMIN"]}, "spec.capAdd"),
    ({"devices": [{"hostPath": "/dev/sda"}]}, "spec.devices"),
    ({"pidMode": "host"}, "spec.pidMode"),
    ({"ipcMode": "host"}, "spec.ipcMode"),
    ({"seccompProfile": "unconfined"}, "spec.seccompProfile"),
    ({"apparmorProfile": "unconfined"}, "spec.apparmorProfile"),
])
def test_restricted_node_refuses_governed_container_fields(restricted: DaemonProcess, spec: dict[str, Any],
                                                           rule: str) -> None:
    message = _refusal(restricted, LOCAL_CONTAINERS.path("default"), lc_object("governed", **spec))
    assert message == (f'admission webhook "nodepolicy.k3c.io" denied the request: node policy: {rule} '
                       f"is not allowed {FLAG_SOURCE}")
    assert restricted.container("governed") is None


def test_restricted_node_allows_the_rest(restricted: DaemonProcess) -> None:
    ok = lc_object("plain", command=["true"], volumes=[{"hostPath": f"{ALLOWED}/data", "mountPath": "/d"}],
                   ipcMode="private", noNewPrivileges=True, ulimits=[{"name": "nofile", "soft": 64, "hard": 64}],
                   tmpfs=[{"mountPath": "/run"}], extraHosts=[{"name": "db", "ip": "host-gateway"}])
    _dry_create(restricted, LOCAL_CONTAINERS.path("default"), ok)
    restricted.create_container("plain-run", command=["true"])
    assert restricted.wait_phase("plain-run", "Exited")["status"]["exitCode"] == 0
    restricted.delete_container("plain-run")  # the operator's own writes (finalizers) pass the webhook


def test_restricted_node_refuses_build_contexts_from_the_node(restricted: DaemonProcess) -> None:
    def build(context: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": IMAGE_BUILDS.api_version, "kind": IMAGE_BUILDS.kind, "metadata": {"name": "b"},
                "spec": {"context": context, "tags": ["k3c.test/policy:1"]}}

    assert "node policy: spec.context.dir is not allowed" in _refusal(
        restricted, IMAGE_BUILDS.path("default"), build({"dir": "/root"}))
    assert "node policy: spec.context.git.url is not allowed" in _refusal(
        restricted, IMAGE_BUILDS.path("default"), build({"git": {"url": "file:///root/repo"}}))
    _dry_create(restricted, IMAGE_BUILDS.path("default"), build({"dir": f"{ALLOWED}/app"}))


def test_restricted_node_refuses_credentials_outside_the_credentials_namespace(restricted: DaemonProcess) -> None:
    def img(namespace: str) -> dict[str, Any]:
        return {"apiVersion": IMAGES.api_version, "kind": IMAGES.kind, "metadata": {"name": "creds-test"},
                "spec": {"reference": "k3c.test/creds:1", "authSecret": {"namespace": namespace, "name": "x"}}}

    message = _refusal(restricted, IMAGES.path(), img("default"))
    assert message.endswith(f'node policy: spec.authSecret may only name Secrets in namespace "kube-system" '
                            f"{FLAG_SOURCE}")
    _dry_create(restricted, IMAGES.path(), img("kube-system"))


def test_refusal_reaches_kubectl_and_the_cli(restricted: DaemonProcess, kubectl: str) -> None:
    doc = lc_object("via-kubectl", privileged=True)
    cp = run_kubectl(kubectl, restricted.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert cp.returncode == 1 and "Error from server (Forbidden)" in cp.stderr, cp.stderr
    assert f"node policy: spec.privileged is not allowed {FLAG_SOURCE}" in cp.stderr
    env = {**os.environ, "K3C_KUBECONFIG": str(restricted.kubeconfig)}
    cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", "run", "--rm", "--privileged", TEST_IMAGE, "true"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert cp.returncode == 125 and "node policy: spec.privileged is not allowed" in cp.stderr, cp.stderr
    assert cp.stderr.count("\n") == 1 and "Traceback" not in cp.stderr


# ------------------------------------------------------------------------------------------ NodePolicy object


def _policy(kubectl: str, d: DaemonProcess, **spec: Any) -> None:
    doc = {"apiVersion": "k3c.io/v1alpha1", "kind": "NodePolicy", "metadata": {"name": "default"}, "spec": spec}
    run_kubectl(kubectl, d.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(doc))


def _privileged_refused(d: DaemonProcess) -> str:
    try:
        _dry_create(d, LOCAL_CONTAINERS.path("default"), lc_object("probe", privileged=True))
    except Forbidden as err:
        return err.message
    return ""


def test_nodepolicy_object_restricts_a_permissive_node(daemon: DaemonProcess, kubectl: str, tmp_path: Path) -> None:
    assert _privileged_refused(daemon) == ""  # permissive: like docker.sock
    daemon.create_container("grandfathered", command=["sleep", "300"], privileged=True, stopTimeout=0)
    daemon.wait_phase("grandfathered", "Running")
    try:
        _policy(kubectl, daemon, mode="restricted")
        message = wait_until(lambda: _privileged_refused(daemon), 10, "the NodePolicy to be enforced")
        assert message.endswith(f"node policy: spec.privileged is not allowed {OBJECT_SOURCE}")
        explained = run_kubectl(kubectl, daemon.kubeconfig, "explain", "nodepolicy.spec.allow").stdout
        assert "LocalContainer.spec.privileged" in explained
        # what an existing object already has is not refused again: it can be stopped and removed
        daemon.api.merge_patch(LOCAL_CONTAINERS.path("default", "grandfathered"), {"spec": {"state": "Stopped"}})
        daemon.wait_phase("grandfathered", "Exited")
        daemon.delete_container("grandfathered")
        _policy(kubectl, daemon, mode="restricted", allow=["LocalContainer.spec.privileged"])
        wait_until(lambda: not _privileged_refused(daemon), 10, "the allowance to apply")
        with pytest.raises(Forbidden):
            _dry_create(daemon, LOCAL_CONTAINERS.path("default"), lc_object("probe", hostNetwork=True))
    finally:
        run_kubectl(kubectl, daemon.kubeconfig, "delete", "nodepolicy", "default", "--ignore-not-found")
    wait_until(lambda: not _privileged_refused(daemon), 10, "the node to be permissive again")
    _dry_create(daemon, LOCAL_CONTAINERS.path("default"), lc_object("probe", hostNetwork=True))
