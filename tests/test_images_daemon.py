"""Images through a whole `k3c daemon` (the `daemon` fixture): pull, run, save/load, as a user does it.

The daemon must serve the image archive subresources (`k3c.registry.server.register`) and run the image
handlers (`operator/images.py`'s `register`); until it does, these tests skip and say which is missing.
tests/test_images_cli.py covers the same ground on a stack of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from images_harness import RegistryProcess

from k3c import kubeclient
from k3c.images.ocilayout import busybox_image
from k3c.images.reference import normalize

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
    """The daemon, if its operator runs the image handlers (else skip and say what is missing)."""
    deadline = time.monotonic() + 5
    while normalize("k3c.test/busybox:latest") not in _objects(daemon):
        if time.monotonic() > deadline:
            pytest.skip("the daemon's operator does not run the image handlers: it must call "
                        "k3c.operator.images.register(registry, config)")
        time.sleep(0.05)
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
    try:
        images_daemon.api.get("/apis/k3c.io/v1alpha1/images/-/save", image="k3c.test/none:1")
    except kubeclient.APIStatusError as err:
        if "could not find the requested resource" in err.message:
            pytest.skip("the daemon does not serve images/save|load: it must call "
                        "k3c.registry.server.register(apiserver.handler, containerd_address)")
    archive = tmp_path / "busybox.tar"
    k3c(images_daemon, "tag", "k3c.test/busybox:latest", "k3c.test/saved:1")
    k3c(images_daemon, "save", "--format", "oci-archive", "-o", str(archive), "k3c.test/saved:1")
    k3c(images_daemon, "rmi", "k3c.test/saved:1")
    assert normalize("k3c.test/saved:1") not in _objects(images_daemon)
    assert k3c(images_daemon, "load", "-i", str(archive)).stdout.decode() == "Loaded image: k3c.test/saved:1\n"
    assert normalize("k3c.test/saved:1") in _objects(images_daemon)
