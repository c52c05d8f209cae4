"""The node's Kubernetes runtime: the containerd a kubelet uses on this host, found so k3c stays out of it.

k3c must never make CRI sandboxes in a kubelet's containerd: the kubelet lists every sandbox and stops
those of no Pod it knows (its orphaned-pod cleanup). So ``--containerd-address`` naming such a containerd
is refused unless forced, and the same finding tells where the node's images must be shared to.

A containerd is a kubelet's when

- a kubelet running here names it (``--container-runtime-endpoint``; kubelet's default is stock
  containerd's socket), or a k3s server or agent runs here (its kubelet is in-process, on k3s's own
  containerd unless it names another), or
- it holds Pod sandboxes a kubelet made (the ``io.kubernetes.pod.uid`` label) that are not k3c's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from k3c.api import CRI_MANAGED_LABEL
from k3c.cri.errors import RuntimeCallError
from k3c.cri.runtime import CRIClient

#: k3s's containerd, and stock containerd's (the kubelet's default endpoint).
K3S_SOCKET = "/run/k3s/containerd/containerd.sock"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
#: The label the kubelet puts on every sandbox it makes.
KUBELET_POD_LABEL = "io.kubernetes.pod.uid"
_ENDPOINT_FLAG = "--container-runtime-endpoint"


def socket_path(address: str) -> str:
    """A CRI endpoint as a socket path (``unix:///run/x.sock`` → ``/run/x.sock``)."""
    return os.path.normpath(address.removeprefix("unix://"))


def _processes(proc: Path) -> Iterator[list[str]]:
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        yield [a.decode(errors="replace") for a in argv if a]


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def kubelet_endpoints(proc: Path = Path("/proc")) -> set[str]:
    """The containerd sockets the kubelets running on this host use."""
    found = set()
    for argv in _processes(proc):
        if not argv:
            continue
        program = os.path.basename(argv[0])
        if program == "kubelet":
            found.add(socket_path(_flag(argv, _ENDPOINT_FLAG) or CONTAINERD_SOCKET))
        elif program == "k3s" and len(argv) > 1 and argv[1] in ("server", "agent"):
            found.add(socket_path(_flag(argv, _ENDPOINT_FLAG) or K3S_SOCKET))
    return found


async def kubelet_sandboxes(address: str) -> int:
    """How many Pod sandboxes a kubelet made in the containerd at ``address`` (0 if it cannot say)."""
    try:
        async with CRIClient(address, timeout=5.0) as cri:
            sandboxes = await cri.list_pod_sandbox()
    except (RuntimeCallError, OSError):
        return 0
    return sum(1 for sb in sandboxes if KUBELET_POD_LABEL in sb.labels and CRI_MANAGED_LABEL not in sb.labels)


async def kubelet_use(address: str) -> str:
    """Why the containerd at ``address`` is a kubelet's (a phrase), or "" when nothing says it is."""
    if socket_path(address) in kubelet_endpoints():
        return "a kubelet on this host uses it"
    count = await kubelet_sandboxes(address)
    return f"it holds {count} Pod sandbox{'es' if count > 1 else ''} of a kubelet" if count else ""


def node_runtime() -> str | None:
    """The socket of the containerd a kubelet on this host uses, if there is one (the first found)."""
    return next((s for s in sorted(kubelet_endpoints()) if Path(s).is_socket()), None)
