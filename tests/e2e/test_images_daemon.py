"""Images through a whole `k3c daemon` (the `daemon` fixture): pull, run, save/load, as a user does it.

The daemon serves the image archive subresources (`k3c.archives.subresource.ArchiveEndpoints`) and its
operator runs the image controller (`operator/handlers.py` registers it): if either is missing, these
tests fail.
tests/e2e/test_images_cli.py covers the same ground on a stack of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from k3c.oci.layout import busybox_image
from k3c.oci.reference import normalize
from tests.support.daemon_harness import TEST_IMAGE, wait_until
from tests.support.harness import run_kubectl
from tests.support.images_harness import RegistryProcess

pytestmark = pytest.mark.skipif(not shutil.which("docker-registry"), reason="needs docker-registry")


def k3c(daemon: Any, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], env=env, capture_output=True, input=input,
                        timeout=180)
    if check and cp.returncode != 0:
        raise AssertionError(f"k3c {' '.join(args)}: {cp.returncode} {cp.stderr.decode()}")
    return cp


def _objects(daemon: Any) -> dict[str, dict[str, Any]]:
    items = daemon.api.get("/apis/k3c.io/v1alpha1/images").get("items", [])
    return {o["spec"]["reference"]: o for o in items}


@pytest.fixture(scope="module")
def images_daemon(daemon: Any) -> Any:
    """The daemon once its operator's image handlers list the imported test image as an Image object."""
    wait_until(lambda: normalize(TEST_IMAGE) in _objects(daemon), 5,
               "the daemon's operator (k3c.operator.images.register) to list the test image")
    return daemon


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: Any) -> Any:
    reg = RegistryProcess(tmp_path_factory.mktemp("open-registry"), users=None).start()
    yield reg
    reg.stop()


def test_pull_then_run(images_daemon: Any, open_registry: RegistryProcess) -> None:
    ref = f"{open_registry.host}/k3c/daemon-busybox:v1"
    images_daemon.import_image(ref, busybox_image())
    k3c(images_daemon, "push", "-q", ref)
    k3c(images_daemon, "rmi", ref)
    assert normalize(ref) not in _objects(images_daemon)
    k3c(images_daemon, "pull", "-q", ref)
    out = k3c(images_daemon, "run", "--rm", ref, "echo", "hello from a pulled image").stdout.decode()
    assert "hello from a pulled image" in out


def test_save_load_through_the_daemon(images_daemon: Any, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    k3c(images_daemon, "tag", TEST_IMAGE, "k3c.test/saved:1")
    k3c(images_daemon, "save", "--format", "oci-archive", "-o", str(archive), "k3c.test/saved:1")
    k3c(images_daemon, "rmi", "k3c.test/saved:1")
    assert normalize("k3c.test/saved:1") not in _objects(images_daemon)
    assert k3c(images_daemon, "load", "-i", str(archive)).stdout.decode() == "Loaded image: k3c.test/saved:1\n"
    assert normalize("k3c.test/saved:1") in _objects(images_daemon)


# ------------------------------------------------------------------------------------------ images in use
# (The last tests of the module: `kubectl delete images --all` removes every image nothing uses.)


def _image_name(daemon: Any, ref: str) -> str:
    name: str = wait_until(lambda: _objects(daemon).get(normalize(ref)), 10, f"the Image of {ref}")["metadata"]["name"]
    return name


def _short_cid(obj: dict[str, Any]) -> str:
    """The container's docker ID (sha256 of its uid), as docker's messages show it."""
    return hashlib.sha256(obj["metadata"]["uid"].encode()).hexdigest()[:12]


def test_delete_of_an_image_in_use_is_refused_409_up_front(images_daemon: Any, kubectl: str) -> None:
    from k3c.apierrors import Conflict

    d = images_daemon
    ref = "k3c.test/inuse:1"
    k3c(d, "tag", TEST_IMAGE, ref)
    name = _image_name(d, ref)
    image_id = _objects(d)[normalize(ref)]["status"]["id"]
    d.create_container("inuse", image=ref, command=["sleep", "300"], stopTimeout=0)
    running = d.wait_phase("inuse", "Running")
    expected = (f'conflict: unable to remove repository reference "{ref}" (must force) - container '
                f"{_short_cid(running)} is using its referenced image {image_id[7:19]}")
    with pytest.raises(Conflict) as refused:
        d.api.delete(f"/apis/k3c.io/v1alpha1/images/{name}")
    assert refused.value.code == 409
    assert refused.value.message == f'admission webhook "images.k3c.io" denied the request: {expected}'
    cp = run_kubectl(kubectl, d.kubeconfig, "delete", "image", name, check=False, timeout=30)
    assert cp.returncode == 1 and "Error from server (Conflict)" in cp.stderr and expected in cp.stderr, cp.stderr
    assert not _objects(d)[normalize(ref)]["metadata"].get("deletionTimestamp")  # refused, not left Terminating
    d.delete_container("inuse")
    run_kubectl(kubectl, d.kubeconfig, "delete", "image", name, timeout=30)
    assert normalize(ref) not in _objects(d)


def test_rmi_force_removes_an_image_a_container_uses(images_daemon: Any) -> None:
    d = images_daemon
    ref = "k3c.test/forced:1"
    k3c(d, "tag", TEST_IMAGE, ref)
    _image_name(d, ref)
    d.create_container("forced", image=ref, command=["sleep", "300"], stopTimeout=0)
    d.wait_phase("forced", "Running")
    refused = k3c(d, "rmi", ref, check=False)
    assert refused.returncode == 1 and b"(must force)" in refused.stderr and refused.stderr.count(b"\n") == 1
    assert f"Untagged: {ref}" in k3c(d, "rmi", "-f", ref).stdout.decode()
    assert normalize(ref) not in _objects(d)
    assert d.container("forced")["status"]["phase"] == "Running"  # the container keeps its image
    d.delete_container("forced")


def test_the_operator_registers_its_webhooks_with_its_own_ca(images_daemon: Any) -> None:
    import base64

    d = images_daemon
    config = d.api.get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/k3c.io")
    # a permissive node: the node-policy webhook is not needed; the networks' is always there
    assert [h["name"] for h in config["webhooks"]] == ["images.k3c.io", "networks.k3c.io"]
    hook = config["webhooks"][0]
    assert hook["name"] == "images.k3c.io" and hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["rules"] == [{"operations": ["DELETE"], "apiGroups": ["k3c.io"], "apiVersions": ["v1alpha1"],
                              "resources": ["images"], "scope": "*"}]
    assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:")
    certs = d.root_dir / "webhook"
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == (certs / "ca.crt").read_bytes()
    for key in ("ca.key", "tls.key"):
        assert (certs / key).stat().st_mode & 0o777 == 0o600


def test_an_unreachable_operator_blocks_image_deletes_and_nothing_else(images_daemon: Any) -> None:
    """k3c.io pointed at a port nobody serves, as after the operator died: deleting an Image fails closed
    (failurePolicy Fail), every other kind is written without asking anyone."""
    from k3c.apierrors import APIError
    from tests.support.harness import free_port

    d = images_daemon
    ref = "k3c.test/blocked:1"
    k3c(d, "tag", TEST_IMAGE, ref)
    name = _image_name(d, ref)
    path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/k3c.io"
    registered = d.api.get(path)
    dead = json.loads(json.dumps(registered))
    dead["webhooks"][0]["clientConfig"]["url"] = f"https://127.0.0.1:{free_port()}/validate/images.k3c.io"
    d.api.request("PUT", path, dead)
    try:
        started = time.monotonic()
        d.api.create("/api/v1/namespaces/default/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                               "metadata": {"name": "unrelated"}})
        assert time.monotonic() - started < 2
        with pytest.raises(APIError) as failed:
            d.api.delete(f"/apis/k3c.io/v1alpha1/images/{name}")
        assert failed.value.code == 500 and 'failed calling webhook "images.k3c.io"' in failed.value.message
    finally:
        current = d.api.get(path)
        d.api.request("PUT", path, {**registered, "metadata": {**registered["metadata"],
                                                               "resourceVersion": current["metadata"]["resourceVersion"]}})
    assert not _objects(d)[normalize(ref)]["metadata"].get("deletionTimestamp")
    k3c(d, "rmi", ref)


def test_kubectl_delete_all_images_returns_and_leaves_nothing_terminating(images_daemon: Any, kubectl: str) -> None:
    from k3c.pauseimage import PAUSE_IMAGE
    from tests.support.images_harness import sized_image

    d = images_daemon
    tag = uuid.uuid4().hex[:8]  # an image of its own per run (the test runs once per kubectl)
    unused = f"k3c.test/unused:{tag}"
    d.import_image(unused, sized_image(0.05, layers=1, seed=tag))
    _image_name(d, unused)
    if d.container("keeper") is None:
        d.create_container("keeper", command=["sleep", "300"], stopTimeout=0)
    d.wait_phase("keeper", "Running")
    cp = run_kubectl(kubectl, d.kubeconfig, "delete", "images", "--all", "--wait", check=False, timeout=90)
    assert cp.returncode == 1, cp.stdout + cp.stderr  # some were refused, and kubectl says so
    refusals = [line for line in cp.stderr.splitlines() if "Error from server (Conflict)" in line]
    assert any(f'repository reference "{TEST_IMAGE}"' in line for line in refusals), cp.stderr
    assert any(normalize(PAUSE_IMAGE) in normalize_in(line) for line in refusals), cp.stderr
    # (kubectl does not wait for the deleted ones when others were refused; they finish on their own)
    wait_until(lambda: not [r for r, o in _objects(d).items() if o["metadata"].get("deletionTimestamp")], 15,
               "no Image left Terminating")
    left = _objects(d)
    assert normalize(TEST_IMAGE) in left and normalize(PAUSE_IMAGE) in left and normalize(unused) not in left
    assert d.container("keeper")["status"]["phase"] == "Running"


def normalize_in(line: str) -> str:
    """The normalized reference named in a conflict line (``repository reference "REF"``)."""
    quoted = line.split('repository reference "', 1)[-1].split('"', 1)[0]
    try:
        return normalize(quoted)
    except ValueError:
        return quoted
