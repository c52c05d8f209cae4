"""Images shared with the node's Kubernetes runtime: in its containerd's ``k8s.io`` when the k3c command returns.

A second containerd plays the node runtime (k3s's, whose kubelet would run Pods from it); `k3c daemon
--node-runtime-address SOCK` shares into it. Each check asks that containerd itself, as `ctr -n k8s.io images ls` and
a kubelet's ImageStatus would, right after the k3c command returned: no waiting.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from k3c.cri.imageshare import copy_image
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.runtime import CRIClient
from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess, cleanup_network
from k3c.oci.layout import build_image, build_layer, busybox_image, write_oci_archive
from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, pick_subnet
from tests.support.harness import wait_until

pytestmark = pytest.mark.containerd


@dataclass
class Node:
    daemon: DaemonProcess
    runtime: ContainerdConfig

    def k3c(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "K3C_KUBECONFIG": str(self.daemon.kubeconfig)}
        cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True,
                            timeout=timeout, env=env)
        assert cp.returncode == 0, f"k3c {' '.join(args)}: {cp.stderr}"
        return cp

    def runtime_images(self) -> set[str]:
        """`ctr -n k8s.io images ls -q` on the node runtime."""
        out = subprocess.run(["ctr", "-a", str(self.runtime.socket_path), "-n", "k8s.io", "images", "ls", "-q"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return set(out.split())

    def kubelet_sees(self, ref: str) -> bool:
        """Whether the runtime's CRI (what the kubelet asks for a Pod's image) has it."""
        async def status() -> bool:
            async with CRIClient(self.runtime.socket_path) as cri:
                return await cri.image_status(ref) is not None
        return asyncio.run(status())


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    base = Path(tempfile.mkdtemp(prefix="k3cs-", dir="/tmp"))
    bridge = f"k3cn{uuid.uuid4().hex[:6]}"
    runtime = ContainerdConfig(root_dir=base / "rt-root", state_dir=base / "rt-state", bridge=bridge,
                               network_name=bridge, subnet=pick_subnet())
    ctd = ContainerdProcess(runtime)
    asyncio.run(ctd.start())
    daemon = DaemonProcess(base / "d", ["--node-runtime-address", str(runtime.socket_path)])
    try:
        daemon.start()
        daemon.import_image(TEST_IMAGE, busybox_image())
        yield Node(daemon, runtime)
    finally:
        problems = daemon.close()
        asyncio.run(ctd.stop())
        cleanup_network(runtime)
        shutil.rmtree(base, ignore_errors=True)
    assert not problems, problems


def test_load_tag_build_and_rmi_are_the_runtimes_too_when_they_return(node: Node, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    write_oci_archive(archive, {"k3c.test/loaded:1": busybox_image(applets=["sh", "echo"])})
    node.k3c("load", "-i", str(archive))
    assert "k3c.test/loaded:1" in node.runtime_images() and node.kubelet_sees("k3c.test/loaded:1")

    node.k3c("tag", "k3c.test/loaded:1", "k3c.test/tagged:2")
    assert "k3c.test/tagged:2" in node.runtime_images()

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nRUN echo built > /msg\n")
    node.k3c("build", "-q", "-t", "k3c.test/built:3", str(ctx))
    assert "k3c.test/built:3" in node.runtime_images() and node.kubelet_sees("k3c.test/built:3")

    node.k3c("rmi", "k3c.test/tagged:2")
    images = node.runtime_images()
    assert "k3c.test/tagged:2" not in images and "k3c.test/loaded:1" in images


def test_an_image_named_by_another_route_is_shared_by_its_reconcile(node: Node) -> None:
    """An image that appears in k3c's containerd unannounced (here an import; a CRI pull alike) is shared
    before its Image object says Ready."""
    node.daemon.import_image("k3c.test/imported:4", busybox_image(applets=["true"]))
    ready = wait_until(lambda: next((o for o in node.daemon.api.get("/apis/k3c.io/v1alpha1/images")["items"]
                                     if o["spec"]["reference"] == "k3c.test/imported:4"
                                     and (o.get("status") or {}).get("phase") == "Ready"), None), 20,
                       "the imported image's object to be Ready")
    assert ready and "k3c.test/imported:4" in node.runtime_images()


class CountingReads(ContainerdImages):
    """k3c's store, counting which blobs a copy reads from it (a real containerd underneath)."""

    read_digests: list[str]

    def read_chunks(self, digest: str, offset: int = 0, size: int = 0) -> AsyncIterator[bytes]:
        self.read_digests.append(digest)
        return super().read_chunks(digest, offset, size)


def test_blobs_the_runtime_has_are_not_copied_again(node: Node) -> None:
    """Image b shares image a's layer: once a is there, copying b reads only b's own blobs."""
    shared, own = build_layer({"etc/shared": b"both\n"}), build_layer({"etc/own": b"b only\n"})
    a, b = build_image([shared]), build_image([shared, own])
    ns = f"k3c-share-{uuid.uuid4().hex[:6]}"  # out of the operator's sight: only this copy shares them
    names = {"k3c.test/share-a:1": a, "k3c.test/share-b:1": b}

    async def run() -> list[list[str]]:
        src = CountingReads(node.daemon.containerd_address, ns)
        src.read_digests = []
        dst = ContainerdImages(node.runtime.socket_path)
        reads = []
        try:
            for name, image in names.items():
                await src.import_image(name, image)
            for name in [*names, "k3c.test/share-b:1"]:
                await copy_image(src, dst, name)
                reads.append(list(src.read_digests))
                src.read_digests.clear()
        finally:
            for name in names:
                await src.delete(name)
                await dst.delete(name)
            await src.close()
            await dst.close()
        return reads

    first, second, again = asyncio.run(run())
    assert set(first) == set(a.blobs)
    assert set(second) == set(b.blobs) - {shared.digest} and shared.digest not in second
    assert again == []  # the same name again: nothing read, nothing sent
