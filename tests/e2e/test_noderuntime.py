"""k3c stays out of a kubelet's containerd: `k3c daemon --containerd-address` at one is refused unless forced.

The kubelet is played twice, for real: a containerd holding a Pod sandbox labelled as the kubelet labels its
own, and a process named ``kubelet`` whose ``--container-runtime-endpoint`` names the socket.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from k3c.cri.runtime import CRIClient, pb
from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess, cleanup_network
from k3c.daemon.noderuntime import kubelet_endpoints, kubelet_use
from k3c.daemon.pause import ensure_pause_image
from tests.support.daemon_harness import DaemonProcess, pick_subnet
from tests.support.harness import wait_until

pytestmark = pytest.mark.containerd


@pytest.fixture
def runtime() -> Iterator[ContainerdConfig]:
    """A containerd that is not k3c's (it plays the node runtime), stopped by its PID afterwards."""
    base = Path(tempfile.mkdtemp(prefix="k3cr-", dir="/tmp"))
    bridge = f"k3cr{uuid.uuid4().hex[:6]}"
    cfg = ContainerdConfig(root_dir=base / "root", state_dir=base / "state", bridge=bridge, network_name=bridge,
                           subnet=pick_subnet())
    ctd = ContainerdProcess(cfg)
    asyncio.run(ctd.start())
    try:
        yield cfg
    finally:
        asyncio.run(_remove_sandboxes(cfg))
        asyncio.run(ctd.stop())
        cleanup_network(cfg)
        shutil.rmtree(base, ignore_errors=True)


async def _kubelet_sandbox(cfg: ContainerdConfig) -> str:
    await ensure_pause_image(cfg.socket_path, cfg.root_dir.parent / "cache")
    async with CRIClient(cfg.socket_path) as cri:
        uid = uuid.uuid4().hex
        return await cri.run_pod_sandbox(pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="web-0", uid=uid, namespace="default"),
            labels={"io.kubernetes.pod.uid": uid, "io.kubernetes.pod.name": "web-0",
                    "io.kubernetes.pod.namespace": "default"}))


async def _remove_sandboxes(cfg: ContainerdConfig) -> None:
    async with CRIClient(cfg.socket_path) as cri:
        for sb in await cri.list_pod_sandbox():
            await cri.stop_pod_sandbox(sb.id)
            await cri.remove_pod_sandbox(sb.id)


def _daemon(base: Path, cfg: ContainerdConfig, *flags: str) -> subprocess.CompletedProcess[str]:
    """`k3c daemon` on ``cfg``'s containerd; ``base`` must be short (its own containerd's socket path limit,
    checked before the refusal: a test's tmp_path, named by the test, may be too long)."""
    return subprocess.run(
        [sys.executable, "-m", "k3c.cli.main", "daemon", "--root-dir", str(base / "r"), "--state-dir", str(base / "s"),
         "--containerd-address", str(cfg.socket_path), *flags], capture_output=True, text=True, timeout=60)


def test_a_containerd_holding_a_kubelets_sandboxes_is_refused_unless_forced(runtime: ContainerdConfig) -> None:
    assert asyncio.run(kubelet_use(str(runtime.socket_path))) == ""
    asyncio.run(_kubelet_sandbox(runtime))
    assert asyncio.run(kubelet_use(str(runtime.socket_path))) == "it holds 1 Pod sandbox of a kubelet"
    cp = _daemon(runtime.root_dir.parent / "refused", runtime)
    assert cp.returncode == 125
    assert cp.stderr.splitlines()[-1:] == [  # (after the daemon's log)
        f"k3c: refusing --containerd-address {runtime.socket_path}: it holds 1 Pod sandbox of a kubelet, and a "
        "kubelet removes the Pod sandboxes it does not know (--force-containerd-address to use it anyway)"]
    forced = DaemonProcess(runtime.root_dir.parent / "d", ["--containerd-address", str(runtime.socket_path),
                                                 "--force-containerd-address"])
    try:
        forced.start()
        assert forced.status()["ready"]
    finally:
        forced.close()


def test_a_containerd_a_running_kubelet_names_is_refused(runtime: ContainerdConfig) -> None:
    endpoint = f"unix://{runtime.socket_path}"
    kubelet = subprocess.Popen(["kubelet", "-c", "import time; time.sleep(120)",
                                f"--container-runtime-endpoint={endpoint}"], executable=sys.executable)
    try:
        # (exec returns to the parent before the kernel sets the new argv up: /proc may show none for a moment)
        wait_until(lambda: str(runtime.socket_path) in kubelet_endpoints(), 5, "the kubelet in /proc")
        cp = _daemon(runtime.root_dir.parent / "refused", runtime)
        assert cp.returncode == 125
        assert "refusing --containerd-address" in cp.stderr and "a kubelet on this host uses it" in cp.stderr
    finally:
        kubelet.kill()
        kubelet.wait()
