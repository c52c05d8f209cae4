"""Async client for containerd's Containers service: read and replace a CRI container's OCI spec.

CRI has no field for rlimits, a pids limit, tmpfs mounts or the size of /dev/shm. containerd keeps the OCI
spec it generated at CreateContainer in the container's record, and builds the task from that record at
StartContainer; so an edit of the record in between (:meth:`SpecClient.amend`) shapes the process exactly
as a field of CRI would, and goes when the container goes: nothing is left behind.

Every call runs in containerd's ``k8s.io`` namespace, where the CRI plugin keeps its containers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from .channel import CRI_NAMESPACE, dial, namespace_metadata
from .errors import translate
from .proto import containerd_containers_pb2 as containers_pb
from .proto import containerd_containers_pb2_grpc as containers_grpc

__all__ = ["SpecClient"]

#: An OCI runtime spec as JSON (the parsed document is edited in place by an amendment).
OCISpec = dict[str, Any]


class SpecClient:
    """Containers service of one containerd socket, in one containerd namespace (create it in its loop)."""

    def __init__(
        self, address: str | os.PathLike[str], *, namespace: str = CRI_NAMESPACE, timeout: float = 10.0,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.address = os.fspath(address)
        self.timeout = timeout
        self._own_channel = channel is None
        self.channel = channel if channel is not None else dial(self.address)
        self.stub = containers_grpc.ContainersStub(self.channel)
        self._metadata = namespace_metadata(namespace)

    async def close(self) -> None:
        """Close the channel if this client opened it."""
        if self._own_channel:
            await self.channel.close()

    async def spec(self, container_id: str) -> OCISpec:
        """The container's OCI spec as containerd holds it."""
        record = await self._get(container_id)
        return dict(json.loads(record.spec.value))

    async def amend(self, container_id: str, edit: Callable[[OCISpec], None]) -> OCISpec:
        """Apply ``edit`` to the container's OCI spec and store it; returns the new spec. Call it before the
        container's task exists (between CRI's CreateContainer and StartContainer)."""
        record = await self._get(container_id)
        spec = json.loads(record.spec.value)
        edit(spec)
        record.spec.value = json.dumps(spec).encode()
        try:
            await self.stub.Update(
                containers_pb.UpdateContainerRequest(
                    container=record, update_mask=field_mask_pb2.FieldMask(paths=["spec"])),
                timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise translate("Containers.Update", err) from err
        return dict(spec)

    async def _get(self, container_id: str) -> containers_pb.Container:
        try:
            resp = await self.stub.Get(containers_pb.GetContainerRequest(id=container_id),
                                       timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise translate("Containers.Get", err) from err
        return resp.container
