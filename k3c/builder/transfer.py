"""Moving images between containerd's content store and a ``dir:`` image layout on disk, blob by blob.

Why ``dir:`` (containers/image's directory transport: ``manifest.json``, ``version`` and one file per blob
named by its hex digest): buildah reads and writes it without converting the manifest (docker or OCI, as
the image has it), and the blobs are plain files we can stream to and from containerd without holding a
layer in memory.

- :func:`export_image`: a containerd image (for this platform, when it is an index) → ``dir:`` layout, so
  a FROM image that only containerd has can be pulled into buildah's storage with no registry.
- :func:`import_layout`: a ``dir:`` layout → containerd, skipping blobs it already has, under a lease so
  the garbage collector cannot take them before a name references them; manifests get containerd's
  ``gc.ref`` labels. :func:`tag` then points names at it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc

from k3c.cri.errors import translate
from k3c.cri.imagestore import ContainerdImages, gc_labels
from k3c.cri.proto import containerd_content_pb2 as content_pb
from k3c.oci.layout import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    Descriptor,
    children,
    host_architecture,
    sha256_digest,
)

__all__ = ["ImageNotFound", "LayoutImage", "export_image", "import_layout", "platform_manifest", "read_layout", "tag"]

DIR_VERSION = "Directory Transport Version: 1.1\n"
#: Bytes per Write message when streaming a layer file: fewer, larger messages move a big layer faster
#: (containerd accepts up to 16 MiB per message).
CHUNK_SIZE = 4 << 20


class ImageNotFound(Exception):
    """containerd has no such image (or not for this platform)."""


@dataclass(frozen=True)
class LayoutImage:
    """A manifest in a ``dir:`` layout: its descriptor and those of its config and layers."""

    path: Path
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]

    @property
    def image_id(self) -> str:
        return self.config.digest

    @property
    def size(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)

    def blob_path(self, digest: str) -> Path:
        return self.path / digest.split(":", 1)[1]


def read_layout(path: Path) -> LayoutImage:
    """Parse the ``manifest.json`` of a ``dir:`` layout (a single-image manifest, docker or OCI)."""
    raw = (path / "manifest.json").read_bytes()
    doc = json.loads(raw)
    media_type = doc.get("mediaType") or (MEDIA_MANIFEST if "config" in doc else "")
    if media_type not in (MEDIA_MANIFEST, DOCKER_MANIFEST):
        raise ValueError(f"{path}: expected an image manifest, got {media_type or 'unknown media type'}")
    manifest = Descriptor(media_type, sha256_digest(raw), len(raw))
    refs = children(media_type, raw)
    return LayoutImage(path, manifest, refs[0], refs[1:])


# ------------------------------------------------------------------------------------------- export


async def platform_manifest(store: ContainerdImages, desc: Descriptor) -> tuple[Descriptor, bytes]:
    """Resolve an index to the manifest for this machine (linux/<arch>) that the store holds."""
    data = await store.read(desc.digest)
    if desc.media_type not in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
        return desc, data
    arch = host_architecture()
    for child in children(desc.media_type, data):
        plat = child.platform or {}
        if plat.get("os", "linux") == "linux" and plat.get("architecture", arch) == arch:
            if await store.info(child.digest) is not None:
                return await platform_manifest(store, child)
    raise ImageNotFound(f"no linux/{arch} manifest of {desc.digest} in containerd")


async def export_image(store: ContainerdImages, name: str, dest: Path) -> Descriptor:
    """Write containerd's image ``name`` (this platform's manifest) as a ``dir:`` layout at ``dest``.

    Returns the manifest's descriptor (its digest identifies what was exported).
    """
    record = await store.get(name)
    if record is None:
        raise ImageNotFound(name)
    root = Descriptor(record.target.media_type, record.target.digest, record.target.size)
    manifest, raw = await platform_manifest(store, root)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "version").write_text(DIR_VERSION)
    for blob in children(manifest.media_type, raw):
        with open(dest / blob.digest.split(":", 1)[1], "wb") as f:
            async for chunk in store.read_chunks(blob.digest):
                f.write(chunk)
    (dest / "manifest.json").write_bytes(raw)
    return manifest


# ------------------------------------------------------------------------------------------- import


async def _write_file(store: ContainerdImages, digest: str, path: Path, lease: str) -> None:
    """Stream one blob file into the content store (containerd verifies the digest)."""
    total = path.stat().st_size
    ref = f"k3c-build-{digest.split(':', 1)[1][:16]}-{uuid.uuid4().hex[:8]}"

    async def requests() -> AsyncIterator[content_pb.WriteContentRequest]:
        offset = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                yield content_pb.WriteContentRequest(
                    action=content_pb.WRITE, ref=ref, total=total, expected=digest, offset=offset, data=chunk)
                offset += len(chunk)
        yield content_pb.WriteContentRequest(
            action=content_pb.COMMIT, ref=ref, total=total, expected=digest, offset=offset)

    call = store.content.Write(requests(), timeout=store.timeout * (1 + total // CHUNK_SIZE),
                               metadata=store._md(lease))  # same namespace/lease headers
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as err:
        if not await store.written_anyway(err, digest):
            raise translate("Content.Write", err) from err


async def import_layout(store: ContainerdImages, image: LayoutImage, names: Iterable[str],
                        labels: dict[str, str] | None = None) -> None:
    """Write the layout's missing blobs, then the manifest, then point every name at it."""
    lease = await store.create_lease()
    try:
        for blob in [image.config, *image.layers]:
            if await store.info(blob.digest) is None:
                await _write_file(store, blob.digest, image.blob_path(blob.digest), lease)
        if await store.info(image.manifest.digest) is None:
            raw = (image.path / "manifest.json").read_bytes()
            await store.write(image.manifest.digest, raw, gc_labels(image.manifest.media_type, raw), lease=lease)
        await tag(store, image.manifest, names, labels, lease)
    finally:
        await store.delete_lease(lease)


async def tag(store: ContainerdImages, manifest: Descriptor, names: Iterable[str],
              labels: dict[str, str] | None = None, lease: str | None = None) -> None:
    """Create or move each name to ``manifest``."""
    for name in names:
        await store.put(name, manifest, labels, lease=lease)


async def has_all_blobs(store: ContainerdImages, manifest: Descriptor, raw: bytes) -> bool:
    """Whether the manifest and everything it references are in the content store."""
    for blob in [manifest, *children(manifest.media_type, raw)]:
        if await store.info(blob.digest) is None:
            return False
    return True
