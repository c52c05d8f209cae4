"""Images through a whole `k3c daemon` (the `daemon` fixture): pull, run, save/load, as a user does it.

The daemon serves the image archive subresources (`k3c.archives.subresource.ArchiveEndpoints`) and its
operator runs the image controller (`operator/handlers.py` registers it): if either is missing, these
tests fail.
tests/e2e/test_images_cli.py covers the same ground on a stack of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from k3c.oci.layout import busybox_image
from k3c.oci.reference import normalize
from tests.support.daemon_harness import TEST_IMAGE, wait_until
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
