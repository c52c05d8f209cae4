"""`k3c install`'s import of the agents' image into this machine's node runtime, when that runtime lacks it.

The agents' image (``k3c.local/…``) is in no registry: the DaemonSet runs it with ``imagePullPolicy:
IfNotPresent``, so every node's runtime must already hold it. On k3s, ``k3c install`` usually runs on the node
itself, so install looks into the node runtime's containerd on this machine (k3s's socket, stock
containerd's, or ``--node-runtime-address``), namespace ``k8s.io``, and when the image is not there it
assembles it from this host (:mod:`k3c.builder.agentimage`, what ``scripts/build-agent-image`` writes) and
imports it through containerd's API. An image already there is left as it is.

This machine counts as a node when its host name is a chosen Node's name or ``kubernetes.io/hostname`` (as
k3s and kubeadm name nodes), or when ``--node-runtime-address`` says where the runtime is: a stock
containerd socket on a machine that is no node (docker's own, beside a kind cluster) is not the nodes'.
What install cannot reach it says, in one line each, and goes on: a machine that is no node, a runtime that
is not here, and the other nodes of a multi-node cluster, whose runtimes are theirs (as with kim or ``k3d
image import``, the image must be imported on each: running ``k3c install`` there does it). Images named
outside ``k3c.local`` are the nodes' to pull, and left alone.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from k3c.cli.errors import CLIError

#: The registry name of images that exist only where k3c put them (never pulled).
LOCAL_REGISTRY = "k3c.local/"
#: How to import the image by hand on a node install cannot reach.
BY_HAND = ("scripts/build-agent-image, then `k3s ctr images import dist/k3c-agent-*.oci.tar` there "
           "(or run `k3c install` on that node)")


def default_address(runtime: str) -> str:
    """The node runtime's containerd socket for an overlay name (k3s's, or stock containerd's)."""
    from k3c.daemon.noderuntime import CONTAINERD_SOCKET, K3S_SOCKET

    return K3S_SOCKET if runtime == "k3s" else CONTAINERD_SOCKET


def ensure(image: str, runtime: str, address: str | None, nodes: Mapping[str, str]) -> None:
    """Make sure this machine's node runtime holds ``image`` (see the module docstring); says what it did.

    ``address`` is ``--node-runtime-address`` (None: ``runtime``'s socket), ``nodes`` the chosen Nodes' names
    and host names (empty when this user may not list them: the socket alone decides then).
    """
    if not image.startswith(LOCAL_REGISTRY):
        return
    host = socket.gethostname().lower()
    if address is None and nodes and not {host, host.split(".")[0]} & {*nodes, *nodes.values()}:
        print(f"k3c: this machine ({host}) is none of the nodes, {image} not imported: on every node, "
              f"{BY_HAND}", file=sys.stderr)
        return
    address = address or default_address(runtime)
    if not Path(address).is_socket():
        print(f"k3c: no node runtime at {address} on this machine, {image} not imported: on every node, "
              f"{BY_HAND}", file=sys.stderr)
        return
    started = time.monotonic()
    try:
        imported = asyncio.run(_ensure(image, address))
    except OSError as err:  # the agent image could not be read from this host
        raise CLIError(f"k3c: cannot make the agents' image {image}: {err}", 1) from None
    if imported:
        print(f"agents' image {image} imported into the node runtime at {address} "
              f"({time.monotonic() - started:.0f}s)")
    else:
        print(f"agents' image {image} already in the node runtime at {address}")
    if len(nodes) > 1:
        print(f"k3c: {image} is in this machine's runtime only: on each of the other {len(nodes) - 1} nodes, "
              f"{BY_HAND}", file=sys.stderr)


async def _ensure(image: str, address: str) -> bool:
    """Import ``image`` into the runtime unless it has that name; whether it imported."""
    from k3c.builder.agentimage import AgentImageError, build
    from k3c.cri.errors import RuntimeCallError
    from k3c.cri.imagestore import ContainerdImages

    try:
        async with ContainerdImages(address, timeout=60.0) as store:
            if await store.get(image) is not None:
                return False
            try:
                built = await asyncio.to_thread(build)
            except AgentImageError as err:
                raise CLIError(f"k3c: cannot make the agents' image {image}: {err}", 1) from None
            await store.import_image(image, built)
            return True
    except RuntimeCallError as err:
        raise CLIError(f"k3c: cannot import the agents' image into the node runtime at {address}: {err} "
                       "(run install as root on the node, or import the image by hand)", 1) from None
