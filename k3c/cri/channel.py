"""Dialing containerd: one ``grpc.aio`` channel per socket, plus the metadata containerd routes on.

containerd keeps every object (images, containers, content, leases) inside a *namespace* chosen per call by
the gRPC metadata key ``containerd-namespace``; its CRI plugin works in ``k8s.io``, so k3c does too: images
it imports through the containerd API are then the very images CRI runs.
"""

from __future__ import annotations

import os
from typing import Self

import grpc

#: The containerd namespace of the CRI plugin. Images, containers and events k3c cares about live here.
CRI_NAMESPACE = "k8s.io"
#: gRPC metadata key selecting the containerd namespace of a call.
NAMESPACE_HEADER = "containerd-namespace"
#: gRPC metadata key attaching a call to a containerd lease (protects new content from garbage collection).
LEASE_HEADER = "containerd-lease"

#: containerd's own default limits; images' manifests and CRI lists can get large.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # The socket is local: when containerd restarts, reconnect within ~100 ms instead of gRPC's default
    # 1 s-and-growing backoff, so a restarted runtime is usable again at once.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def unix_target(address: str | os.PathLike[str]) -> str:
    """Return a gRPC target for a unix socket path; ``unix://...`` and ``unix:...`` targets pass unchanged."""
    address = os.fspath(address)
    if address.startswith("unix:"):
        return address
    return "unix://" + os.path.abspath(address)


def dial(address: str | os.PathLike[str]) -> grpc.aio.Channel:
    """Open a ``grpc.aio`` channel to containerd's socket.

    Call this from inside the event loop that will use the channel: ``grpc.aio`` binds a channel to the loop
    running when it is created.
    """
    return grpc.aio.insecure_channel(unix_target(address), options=_CHANNEL_OPTIONS)


def namespace_metadata(
    namespace: str = CRI_NAMESPACE, lease: str | None = None
) -> tuple[tuple[str, str], ...]:
    """gRPC metadata selecting a containerd namespace (and optionally a lease) for one call."""
    md: tuple[tuple[str, str], ...] = ((NAMESPACE_HEADER, namespace),)
    if lease:
        md += ((LEASE_HEADER, lease),)
    return md


class ServiceClient:
    """What every client of one containerd socket has: its address, and a channel it dials itself or is
    given. A given channel is shared (one per socket, see :func:`dial`), so only a dialled one is closed."""

    def __init__(self, address: str | os.PathLike[str], *, channel: grpc.aio.Channel | None = None) -> None:
        self.address = os.fspath(address)
        self._own_channel = channel is None
        self.channel = channel if channel is not None else dial(self.address)

    async def close(self) -> None:
        """Close the channel if this client opened it (that ends its open streams too)."""
        if self._own_channel:
            await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
