"""CRI and task clients of one containerd for the node-side handlers: opened on first use, closed together.

Why lazily: grpc.aio channels belong to the event loop that makes them, and a handler object is built before
the API server's loop runs. The streams (:mod:`k3c.streams.server`) and the other node-side operations
(:mod:`k3c.streams.nodeops`) each hold their own.
"""

from __future__ import annotations

from k3c.cri.runtime import CRIClient
from k3c.cri.tasks import TasksClient


class RuntimeClients:
    """CRI at ``cri_address`` and containerd's task service at ``containerd_address`` (the same socket when
    CRI is containerd's plugin), each connected when first asked for."""

    def __init__(self, cri_address: str, containerd_address: str) -> None:
        self.cri_address = cri_address
        self.containerd_address = containerd_address
        self._cri: CRIClient | None = None
        self._tasks: TasksClient | None = None

    @property
    def cri(self) -> CRIClient:
        if self._cri is None:
            self._cri = CRIClient(self.cri_address)
        return self._cri

    @property
    def tasks(self) -> TasksClient:
        if self._tasks is None:
            self._tasks = TasksClient(self.containerd_address)
        return self._tasks

    async def close(self) -> None:
        """Close the channels opened; the next use opens new ones."""
        for client in (self._cri, self._tasks):
            if client is not None:
                await client.close()
        self._cri = self._tasks = None
