"""containerd's content store and image names, through its own gRPC API (no ``ctr`` subprocess).

CRI can only pull; k3c also needs to *import* images it builds or loads (``docker load``, the pause image)
and later to read blobs back for push/save. :class:`ContainerdImages` wraps the Content, Images and Leases
services of containerd for that, always in one containerd namespace (``k8s.io``, the CRI plugin's, so
an imported image is immediately runnable through CRI; CRI picks it up from the ``/images/create`` event).

Import writes blobs children-first under a short-lived lease (so the garbage collector cannot take them
before the image name references them) and labels manifests/indexes with ``containerd.io/gc.ref.content.*``
so that, once named, the whole tree stays alive. Layers are unpacked lazily by CRI on first use.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping

import grpc
from google.protobuf import field_mask_pb2

from k3c.oci.layout import MEDIA_INDEX, Descriptor, OCIImage, children
from k3c.timefmt import format_rfc3339

from .channel import CRI_NAMESPACE, ServiceClient, namespace_metadata
from .errors import NotFoundError, translate
from .proto import containerd_content_pb2 as content_pb
from .proto import containerd_content_pb2_grpc as content_grpc
from .proto import containerd_images_pb2 as images_pb
from .proto import containerd_images_pb2_grpc as images_grpc
from .proto import containerd_leases_pb2 as leases_pb
from .proto import containerd_leases_pb2_grpc as leases_grpc
from .proto import containerd_types_pb2 as types_pb

__all__ = ["LEASE_EXPIRE_LABEL", "TEMPORARY_LEASE_PREFIX", "ContainerdImages", "gc_labels"]

#: Bytes per Write/Read message; well below containerd's 16 MiB message limit.
CHUNK_SIZE = 1 << 20

#: containerd's garbage collector drops a lease carrying this label once the time it holds has passed.
LEASE_EXPIRE_LABEL = "containerd.io/gc.expire"
#: The ids of the expiring leases k3c takes for one pull, load, import or transfer.
TEMPORARY_LEASE_PREFIX = "k3c-"


def gc_labels(media_type: str, data: bytes) -> dict[str, str]:
    """``containerd.io/gc.ref.content.*`` labels for a manifest/index blob, naming the blobs it references.

    containerd's garbage collector only follows these labels, never the JSON itself.
    """
    labels: dict[str, str] = {}
    refs = children(media_type, data)
    if not refs:
        return labels
    if media_type == MEDIA_INDEX or "manifest.list" in media_type:
        for i, d in enumerate(refs):
            labels[f"containerd.io/gc.ref.content.m.{i}"] = d.digest
    else:
        labels["containerd.io/gc.ref.content.config"] = refs[0].digest
        for i, d in enumerate(refs[1:]):
            labels[f"containerd.io/gc.ref.content.l.{i}"] = d.digest
    return labels


class ContainerdImages(ServiceClient):
    """Content + Images + Leases services of one containerd socket, in one containerd namespace.

    Create it inside the event loop that will use it; ``timeout`` is the deadline of each unary call
    (streams of blob data get ``timeout`` per started MiB on top).
    """

    def __init__(
        self,
        address: str | os.PathLike[str],
        namespace: str = CRI_NAMESPACE,
        *,
        timeout: float = 30.0,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        super().__init__(address, channel=channel)
        self.namespace = namespace
        self.timeout = timeout
        self.content = content_grpc.ContentStub(self.channel)
        self.images = images_grpc.ImagesStub(self.channel)
        self.leases = leases_grpc.LeasesStub(self.channel)

    def _md(self, lease: str | None = None) -> tuple[tuple[str, str], ...]:
        return namespace_metadata(self.namespace, lease)

    # ---- images ----

    async def get(self, name: str) -> images_pb.Image | None:
        """The image record for a name, or None."""
        try:
            resp = await self.images.Get(
                images_pb.GetImageRequest(name=name), timeout=self.timeout, metadata=self._md()
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise translate("Images.Get", err) from err
        return resp.image

    async def list_images(self, filters: Iterable[str] = ()) -> list[images_pb.Image]:
        """Image records, optionally filtered (containerd filter syntax, e.g. ``name~="^k3c"``)."""
        try:
            resp = await self.images.List(
                images_pb.ListImagesRequest(filters=list(filters)), timeout=self.timeout, metadata=self._md()
            )
        except grpc.aio.AioRpcError as err:
            raise translate("Images.List", err) from err
        return list(resp.images)

    async def put(
        self,
        name: str,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        *,
        lease: str | None = None,
    ) -> images_pb.Image:
        """Point ``name`` at ``target`` (create, or replace target and labels of an existing name)."""
        image = images_pb.Image(
            name=name,
            labels=dict(labels or {}),
            target=types_pb.Descriptor(media_type=target.media_type, digest=target.digest, size=target.size),
        )
        try:
            resp = await self.images.Create(
                images_pb.CreateImageRequest(image=image), timeout=self.timeout, metadata=self._md(lease)
            )
            return resp.image
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise translate("Images.Create", err) from err
        try:
            upd = await self.images.Update(
                images_pb.UpdateImageRequest(
                    image=image, update_mask=field_mask_pb2.FieldMask(paths=["target", "labels"])
                ),
                timeout=self.timeout,
                metadata=self._md(lease),
            )
        except grpc.aio.AioRpcError as err:
            raise translate("Images.Update", err) from err
        return upd.image

    async def delete(self, name: str, sync: bool = False) -> bool:
        """Remove an image name (blobs go with the next GC, or now with ``sync``); False if absent."""
        try:
            await self.images.Delete(
                images_pb.DeleteImageRequest(name=name, sync=sync), timeout=self.timeout, metadata=self._md()
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise translate("Images.Delete", err) from err
        return True

    # ---- content ----

    async def info(self, digest: str) -> content_pb.Info | None:
        """Size and labels of a blob, or None if the store lacks it."""
        try:
            resp = await self.content.Info(
                content_pb.InfoRequest(digest=digest), timeout=self.timeout, metadata=self._md()
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise translate("Content.Info", err) from err
        return resp.info

    async def set_label(self, digest: str, key: str, value: str) -> None:
        """Set one label of a blob (e.g. ``containerd.io/gc.ref.snapshot.*`` on an unpacked image's config)."""
        try:
            await self.content.Update(
                content_pb.UpdateRequest(info=content_pb.Info(digest=digest, labels={key: value}),
                                         update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{key}"])),
                timeout=self.timeout, metadata=self._md())
        except grpc.aio.AioRpcError as err:
            raise translate("Content.Update", err) from err

    async def list_content(self, filters: Iterable[str] = ()) -> list[content_pb.Info]:
        """Every blob (optionally filtered, e.g. by label) in the store."""
        out: list[content_pb.Info] = []
        try:
            async for resp in self.content.List(
                content_pb.ListContentRequest(filters=list(filters)),
                timeout=self.timeout,
                metadata=self._md(),
            ):
                out.extend(resp.info)
        except grpc.aio.AioRpcError as err:
            raise translate("Content.List", err) from err
        return out

    async def read_chunks(self, digest: str, offset: int = 0, size: int = 0) -> AsyncIterator[bytes]:
        """Stream a blob's bytes (``size`` 0: to the end)."""
        try:
            async for resp in self.content.Read(
                content_pb.ReadContentRequest(digest=digest, offset=offset, size=size),
                timeout=None,
                metadata=self._md(),
            ):
                yield resp.data
        except grpc.aio.AioRpcError as err:
            raise translate("Content.Read", err) from err

    async def read(self, digest: str) -> bytes:
        """A whole blob in memory (manifests, configs; stream layers with :meth:`read_chunks`)."""
        return b"".join([chunk async for chunk in self.read_chunks(digest)])

    async def write(
        self, digest: str, data: bytes, labels: Mapping[str, str] | None = None, *, lease: str | None = None
    ) -> bool:
        """Store a blob under its digest (containerd verifies it); False if it was already there."""
        ref = f"k3c-{digest.replace(':', '-')}-{uuid.uuid4().hex[:8]}"
        total = len(data)

        async def requests() -> AsyncIterator[content_pb.WriteContentRequest]:
            offset = 0
            while offset < total:
                chunk = data[offset : offset + CHUNK_SIZE]
                yield content_pb.WriteContentRequest(
                    action=content_pb.WRITE, ref=ref, total=total, expected=digest, offset=offset, data=chunk
                )
                offset += len(chunk)
            yield content_pb.WriteContentRequest(
                action=content_pb.COMMIT,
                ref=ref,
                total=total,
                expected=digest,
                offset=offset,
                labels=dict(labels or {}),
            )

        call = self.content.Write(
            requests(), timeout=self.timeout * (1 + total // CHUNK_SIZE), metadata=self._md(lease)
        )
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.ALREADY_EXISTS:
                return False
            await self._abort(ref)
            if await self.written_anyway(err, digest):
                return False
            raise translate("Content.Write", err) from err
        return True

    async def written_anyway(self, err: grpc.aio.AioRpcError, digest: str) -> bool:
        """Whether a failed Content.Write of ``digest`` means the blob is there. containerd answers
        ALREADY_EXISTS for a blob it has and ends the stream; when grpcio is still sending then, the send
        fails as INTERNAL ("Failed execute_batch"), hiding that answer: the blob being there is the answer."""
        if err.code() == grpc.StatusCode.ALREADY_EXISTS:
            return True
        return bool(digest) and err.code() == grpc.StatusCode.INTERNAL and await self.info(digest) is not None

    async def _abort(self, ref: str) -> None:
        try:
            await self.content.Abort(
                content_pb.AbortRequest(ref=ref), timeout=self.timeout, metadata=self._md()
            )
        except grpc.aio.AioRpcError:
            pass

    # ---- leases ----

    async def create_lease(self, expire_seconds: int = 3600) -> str:
        """A lease that protects content written with it from GC; it expires by itself after a while."""
        lid = TEMPORARY_LEASE_PREFIX + uuid.uuid4().hex
        try:
            await self.leases.Create(
                leases_pb.CreateRequest(
                    id=lid, labels={LEASE_EXPIRE_LABEL: format_rfc3339(time.time() + expire_seconds)}
                ),
                timeout=self.timeout,
                metadata=self._md(),
            )
        except grpc.aio.AioRpcError as err:
            raise translate("Leases.Create", err) from err
        return lid

    async def list_leases(self) -> list[leases_pb.Lease]:
        """Every lease of the namespace (id, creation time, labels: an expiring one has ``gc.expire``)."""
        try:
            resp = await self.leases.List(leases_pb.ListRequest(), timeout=self.timeout, metadata=self._md())
        except grpc.aio.AioRpcError as err:
            raise translate("Leases.List", err) from err
        return list(resp.leases)

    async def ensure_lease(self, lease: str) -> str:
        """A lease with a fixed id and no expiry (e.g. the build cache's), created unless it exists."""
        try:
            await self.leases.Create(leases_pb.CreateRequest(id=lease), timeout=self.timeout, metadata=self._md())
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise translate("Leases.Create", err) from err
        return lease

    async def delete_lease(self, lease: str, sync: bool = False) -> None:
        """Drop a lease (what it protected is then kept only if referenced); ``sync`` waits for the GC."""
        try:
            await self.leases.Delete(
                leases_pb.DeleteRequest(id=lease, sync=sync), timeout=self.timeout, metadata=self._md()
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise translate("Leases.Delete", err) from err

    # ---- import ----

    async def import_image(
        self, name: str, image: OCIImage, labels: Mapping[str, str] | None = None
    ) -> images_pb.Image:
        """Write every blob of ``image`` (skipping those present) and name it ``name``.

        Blobs missing from ``image.blobs`` must already be in the store (e.g. shared base layers).
        """
        lease = await self.create_lease()
        try:
            await self._write_tree(image.target, image.blobs, lease, set())
            return await self.put(name, image.target, labels, lease=lease)
        finally:
            await self.delete_lease(lease)

    async def _write_tree(
        self, desc: Descriptor, blobs: Mapping[str, bytes], lease: str, done: set[str]
    ) -> None:
        if desc.digest in done:
            return
        done.add(desc.digest)
        data = blobs.get(desc.digest)
        if data is None:
            if await self.info(desc.digest) is None:
                raise NotFoundError(
                    "import", grpc.StatusCode.NOT_FOUND, f"blob {desc.digest} neither given nor stored"
                )
            return
        for child in children(desc.media_type, data):
            await self._write_tree(child, blobs, lease, done)
        if await self.info(desc.digest) is not None:
            return
        await self.write(desc.digest, data, gc_labels(desc.media_type, data), lease=lease)


