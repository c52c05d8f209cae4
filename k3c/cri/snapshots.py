"""containerd's Snapshots and Diff services: the layer machinery the native image builder works with.

Why the builder talks to these directly instead of building elsewhere and importing: a layer made in a
containerd snapshot and turned into a blob by containerd's own differ never leaves containerd, so the
built image is "unpacked" the moment it exists (its top snapshot is named by the layer chain ID, which is
what CRI looks up), and no layer is ever streamed over gRPC or copied between stores.

All calls run in one containerd namespace and, when given, under a lease (``containerd-lease`` metadata),
which keeps what they create from the garbage collector.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

import grpc

from k3c.oci.layout import sha256_digest

from .errors import AlreadyExistsError, NotFoundError, RuntimeCallError, translate
from .imagestore import ContainerdImages
from .proto import containerd_diff_pb2 as diff_pb
from .proto import containerd_diff_pb2_grpc as diff_grpc
from .proto import containerd_snapshots_pb2 as snap_pb
from .proto import containerd_snapshots_pb2_grpc as snap_grpc
from .proto import containerd_types_pb2 as types_pb
from .restarts import while_unavailable

__all__ = ["LayerBlob", "Mount", "Snapshots", "chain_id", "stack_chain_id"]

#: Uncompressed OCI layers: containerd, runc and CRI need no compression on one machine, and gzip of a
#: large layer costs far more than the build step that made it (registries accept these as they are).
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Mount:
    """One mount(2) call as a snapshotter describes it."""

    type: str
    source: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class LayerBlob:
    """A layer blob in the content store: its descriptor and the digest of its uncompressed tar."""

    media_type: str
    digest: str
    size: int
    diff_id: str


def chain_id(parent: str, diff_id: str) -> str:
    """The OCI chain ID of a layer stack: the diff ID alone for the bottom layer, else hashed with the parent's."""
    if not parent:
        return diff_id
    return sha256_digest(f"{parent} {diff_id}".encode())


def stack_chain_id(layers: Iterable[LayerBlob]) -> str:
    """The chain ID of a whole layer stack, bottom first ("" for none): its top snapshot's name."""
    out = ""
    for layer in layers:
        out = chain_id(out, layer.diff_id)
    return out


def _mounts(items: Iterable[types_pb.Mount]) -> list[Mount]:
    return [Mount(m.type, m.source, tuple(m.options)) for m in items]


def _pb_mounts(mounts: Iterable[Mount]) -> list[types_pb.Mount]:
    return [types_pb.Mount(type=m.type, source=m.source, options=list(m.options)) for m in mounts]


class _CallArgs(TypedDict):
    """The keyword arguments of every call: the deadline and the metadata (namespace, lease)."""

    timeout: float
    metadata: tuple[tuple[str, str], ...]


class Snapshots:
    """One snapshotter of containerd (plus its differ), sharing a :class:`ContainerdImages` channel."""

    def __init__(self, store: ContainerdImages, snapshotter: str = "overlayfs") -> None:
        self.store = store
        self.snapshotter = snapshotter
        self.snapshots = snap_grpc.SnapshotsStub(store.channel)
        self.differ = diff_grpc.DiffStub(store.channel)

    def _call_args(self, lease: str | None) -> _CallArgs:
        return {"timeout": self.store.timeout, "metadata": self.store._md(lease)}

    async def prepare(self, key: str, parent: str, lease: str | None = None,
                      labels: dict[str, str] | None = None) -> list[Mount]:
        """A new writable snapshot ``key`` on top of the committed ``parent`` ("" for an empty one)."""
        try:
            resp = await self.snapshots.Prepare(snap_pb.PrepareSnapshotRequest(
                snapshotter=self.snapshotter, key=key, parent=parent, labels=labels or {}),
                **self._call_args(lease))
        except grpc.aio.AioRpcError as err:
            raise translate("Snapshots.Prepare", err) from err
        return _mounts(resp.mounts)

    async def view(self, key: str, parent: str, lease: str | None = None) -> list[Mount]:
        """A read-only view ``key`` of the committed ``parent``."""
        try:
            resp = await self.snapshots.View(snap_pb.ViewSnapshotRequest(
                snapshotter=self.snapshotter, key=key, parent=parent), **self._call_args(lease))
        except grpc.aio.AioRpcError as err:
            raise translate("Snapshots.View", err) from err
        return _mounts(resp.mounts)

    async def mounts(self, key: str) -> list[Mount]:
        """How the snapshot ``key`` (a container's, say) is mounted."""
        try:
            resp = await self.snapshots.Mounts(snap_pb.MountsRequest(snapshotter=self.snapshotter, key=key),
                                               **self._call_args(None))
        except grpc.aio.AioRpcError as err:
            raise translate("Snapshots.Mounts", err) from err
        return _mounts(resp.mounts)

    async def commit(self, name: str, key: str, lease: str | None = None) -> bool:
        """Commit the active ``key`` as ``name``; False (and ``key`` removed) when ``name`` already exists."""
        try:
            await self.snapshots.Commit(snap_pb.CommitSnapshotRequest(
                snapshotter=self.snapshotter, name=name, key=key), **self._call_args(lease))
        except grpc.aio.AioRpcError as err:
            exc = translate("Snapshots.Commit", err)
            if not isinstance(exc, AlreadyExistsError):
                raise exc from err
            await self.remove(key)
            return False
        return True

    async def remove(self, key: str) -> None:
        """Remove a snapshot; one already gone is fine."""
        try:
            await self.snapshots.Remove(snap_pb.RemoveSnapshotRequest(
                snapshotter=self.snapshotter, key=key), **self._call_args(None))
        except grpc.aio.AioRpcError as err:
            exc = translate("Snapshots.Remove", err)
            if not isinstance(exc, NotFoundError):
                raise exc from err

    async def remove_patiently(self, key: str, patience: float = 20.0) -> None:
        """Remove a snapshot, waiting out a containerd being restarted (one killed is back within a second or
        two). Used for the clean-up of work cut short: a key given up on stays until someone sweeps it."""
        with contextlib.suppress(RuntimeCallError):
            await while_unavailable(lambda: self.remove(key), patience, 0.25)

    async def exists(self, key: str) -> bool:
        """Whether a snapshot (of any kind) named ``key`` exists."""
        try:
            await self.snapshots.Stat(snap_pb.StatSnapshotRequest(
                snapshotter=self.snapshotter, key=key), **self._call_args(None))
        except grpc.aio.AioRpcError as err:
            exc = translate("Snapshots.Stat", err)
            if isinstance(exc, NotFoundError):
                return False
            raise exc from err
        return True

    async def parent(self, key: str) -> str | None:
        """The parent of the snapshot ``key`` ("" for none), or None if there is no such snapshot."""
        try:
            resp = await self.snapshots.Stat(snap_pb.StatSnapshotRequest(
                snapshotter=self.snapshotter, key=key), **self._call_args(None))
        except grpc.aio.AioRpcError as err:
            exc = translate("Snapshots.Stat", err)
            if isinstance(exc, NotFoundError):
                return None
            raise exc from err
        return str(resp.info.parent)

    async def keys(self, prefix: str = "") -> list[str]:
        """Names of the snapshots (all kinds) starting with ``prefix``."""
        out: list[str] = []
        try:
            async for resp in self.snapshots.List(snap_pb.ListSnapshotsRequest(snapshotter=self.snapshotter),
                                                  **self._call_args(None)):
                out += [info.name for info in resp.info if info.name.startswith(prefix)]
        except grpc.aio.AioRpcError as err:
            raise translate("Snapshots.List", err) from err
        return out

    async def diff(self, lower: list[Mount], upper: list[Mount], lease: str | None = None) -> LayerBlob:
        """The changes from ``lower`` to ``upper`` as an uncompressed layer blob in the content store."""
        try:
            resp = await self.differ.Diff(diff_pb.DiffRequest(
                left=_pb_mounts(lower), right=_pb_mounts(upper), media_type=LAYER_TAR),
                timeout=self.store.timeout * 20, metadata=self.store._md(lease))
        except grpc.aio.AioRpcError as err:
            raise translate("Diff.Diff", err) from err
        d = resp.diff
        return LayerBlob(d.media_type or LAYER_TAR, d.digest, d.size, d.digest)

    async def apply(self, layer: types_pb.Descriptor, mounts: list[Mount], lease: str | None = None) -> str:
        """Unpack a layer blob onto prepared ``mounts``; returns its diff ID (digest of the plain tar)."""
        try:
            resp = await self.differ.Apply(diff_pb.ApplyRequest(diff=layer, mounts=_pb_mounts(mounts)),
                                           timeout=self.store.timeout * 20,
                                           metadata=self.store._md(lease))
        except grpc.aio.AioRpcError as err:
            raise translate("Diff.Apply", err) from err
        return resp.applied.digest
