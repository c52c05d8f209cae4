"""``load``: the images of a docker-archive or OCI-layout tar stream into containerd (:mod:`.formats`).

Loading reads the stream once, in order (``docker save`` puts ``manifest.json`` last): large members go
straight into the content store under a lease while small ones (JSON) stay in memory; once the stream
has ended the images are assembled, checked (every referenced blob present, digests and diff IDs
matching) and only then named. An archive that is cut short or inconsistent therefore names nothing,
and its blobs, unreferenced, go with the lease.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from k3c.cri.content import write_stream
from k3c.cri.imagestore import ContainerdImages, gc_labels
from k3c.oci.layout import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_ZSTD,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MEDIA_INDEX,
    Descriptor,
    canonical_json,
    children,
    sha256_digest,
)
from k3c.oci.reference import InvalidReference, parse

from .formats import ArchiveError
from .tarstream import Member, TarReader

__all__ = ["LoadedImage", "load"]

#: Members up to this size are kept in memory while loading (manifests, configs, small layers).
SMALL = 1 << 20
_METADATA = {"manifest.json", "index.json", "oci-layout", "repositories"}


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """An image named by a load: its name (a reference, or ``sha256:<id>`` when the archive had none)."""

    name: str
    digest: str
    id: str


@dataclass(slots=True)
class _Stored:
    """A member that went to the content store while reading: its digest, size and first bytes."""

    digest: str
    size: int
    magic: bytes


@dataclass(slots=True)
class _Archive:
    small: dict[str, bytes] = field(default_factory=dict)
    stored: dict[str, _Stored] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def resolve(self, path: str) -> str:
        """Follow symlinks/hard links (docker writes shared layers as links) to the member with data."""
        for _ in range(16):
            if path not in self.links:
                return path
            path = self.links[path]
        raise ArchiveError(f"invalid archive: link loop at {path}")


async def load(store: ContainerdImages, chunks: AsyncIterable[bytes]) -> list[LoadedImage]:
    """Import every image of a docker-archive or OCI-layout tar stream (plain or gzip); returns the names."""
    lease = await store.create_lease()
    try:
        archive = await _read_members(store, chunks, lease)
        if "index.json" in archive.small:
            plans = await _plan_oci(store, archive, lease)
        elif "manifest.json" in archive.small:
            plans = await _plan_docker(store, archive, lease)
        else:
            raise ArchiveError("invalid archive: neither manifest.json (docker-archive) nor index.json (OCI layout)")
        loaded = []
        for name, desc, image_id in plans:
            await store.put(name, desc, lease=lease)
            loaded.append(LoadedImage(name, desc.digest, image_id))
        return loaded
    finally:
        await store.delete_lease(lease)


async def _read_members(store: ContainerdImages, chunks: AsyncIterable[bytes], lease: str) -> _Archive:
    archive = _Archive()
    reader = TarReader(chunks)
    try:
        async for m in reader.members():
            if m.is_link:
                base = posixpath.dirname(m.name) if m.type == tarfile.SYMTYPE else ""
                archive.links[m.name] = posixpath.normpath(posixpath.join(base, m.linkname)).lstrip("/")
                continue
            if not m.is_file:
                continue
            if m.name in _METADATA or m.size <= SMALL or (m.name.endswith(".json") and m.size <= 16 * SMALL):
                archive.small[m.name] = await reader.read_all(m)
            else:
                archive.stored[m.name] = await _store_member(store, reader, m, lease)
    except ValueError as err:
        raise ArchiveError(f"invalid archive: {err}") from None
    return archive


async def _store_member(store: ContainerdImages, reader: TarReader, m: Member, lease: str) -> _Stored:
    head = bytearray()

    async def tap() -> AsyncIterator[bytes]:
        async for chunk in reader.data(m):
            if len(head) < 8:
                head.extend(chunk[:8])
            yield chunk

    digest, size = await write_stream(store, tap(), total=m.size, lease=lease)
    return _Stored(digest, size, bytes(head[:8]))


async def _blob(store: ContainerdImages, archive: _Archive, path: str, lease: str,
                labels: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    """Make the member at ``path`` a blob in the store; returns digest, size and first bytes."""
    path = archive.resolve(path)
    if path in archive.stored:
        s = archive.stored[path]
        return s.digest, s.size, s.magic
    data = archive.small.get(path)
    if data is None:
        raise ArchiveError(f"invalid archive: {path} is referenced but missing")
    digest = sha256_digest(data)
    if await store.info(digest) is None:
        await store.write(digest, data, labels, lease=lease)
    return digest, len(data), data[:8]


def _layer_type(magic: bytes) -> str:
    if magic[:2] == b"\x1f\x8b":
        return DOCKER_LAYER_GZIP
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        return DOCKER_LAYER_ZSTD
    return DOCKER_LAYER


# ---- docker-archive ----


async def _plan_docker(store: ContainerdImages, archive: _Archive, lease: str) -> list[tuple[str, Descriptor, str]]:
    try:
        entries = json.loads(archive.small["manifest.json"])
    except ValueError:
        raise ArchiveError("invalid archive: manifest.json is not JSON") from None
    plans = []
    for entry in entries:
        config_path = archive.resolve(entry.get("Config", ""))
        config = archive.small.get(config_path)
        if config is None:
            raise ArchiveError(f"invalid archive: config {config_path} missing")
        diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids", [])
        layer_paths = entry.get("Layers") or []
        if len(layer_paths) != len(diff_ids):
            raise ArchiveError(f"invalid archive: {len(layer_paths)} layers but {len(diff_ids)} diff IDs")
        layers = []
        for path, diff_id in zip(layer_paths, diff_ids, strict=True):
            digest, size, magic = await _blob(store, archive, path, lease)
            media = _layer_type(magic)
            if media == DOCKER_LAYER and digest != diff_id:
                raise ArchiveError(f"invalid archive: layer {path} does not match diff ID {diff_id}")
            layers.append(Descriptor(media, digest, size).to_json())
        config_digest = sha256_digest(config)
        manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                    "config": Descriptor(DOCKER_CONFIG, config_digest, len(config)).to_json(), "layers": layers}
        data = canonical_json(manifest)
        if await store.info(config_digest) is None:
            await store.write(config_digest, config, lease=lease)
        desc = Descriptor(DOCKER_MANIFEST, sha256_digest(data), len(data))
        if await store.info(desc.digest) is None:
            await store.write(desc.digest, data, gc_labels(DOCKER_MANIFEST, data), lease=lease)
        names = [_normalized(t) for t in entry.get("RepoTags") or []] or [config_digest]
        plans += [(n, desc, config_digest) for n in names]
    return plans


def _normalized(name: str) -> str:
    try:
        return str(parse(name))
    except InvalidReference as err:
        raise ArchiveError(f"invalid archive: bad image name {name!r}: {err}") from None


# ---- OCI layout ----


async def _plan_oci(store: ContainerdImages, archive: _Archive, lease: str) -> list[tuple[str, Descriptor, str]]:
    try:
        index = json.loads(archive.small["index.json"])
    except ValueError:
        raise ArchiveError("invalid archive: index.json is not JSON") from None
    plans = []
    for entry in index.get("manifests", []):
        desc = Descriptor.from_json(entry)
        root = Descriptor(desc.media_type, desc.digest, desc.size)
        image_id = await _write_tree(store, archive, root, lease, required=True)
        ann = desc.annotations or {}
        name = ann.get(ANNOTATION_CONTAINERD_NAME) or _ref_name(ann.get(ANNOTATION_REF_NAME, ""))
        plans.append((_normalized(name) if name else image_id, root, image_id))
    return plans


def _ref_name(value: str) -> str:
    """``org.opencontainers.image.ref.name`` is a full reference for docker/skopeo, a bare tag for others."""
    return value if ("/" in value or ":" in value) and not value.startswith("sha256:") else ""


async def _write_tree(store: ContainerdImages, archive: _Archive, desc: Descriptor, lease: str,
                      required: bool) -> str:
    """Children first, each checked against its digest; returns the image ID of the first manifest."""
    path = archive.resolve(f"blobs/{desc.digest.replace(':', '/', 1)}")
    present = path in archive.small or path in archive.stored
    if not present:
        if required:
            raise ArchiveError(f"invalid archive: blob {desc.digest} is referenced but missing")
        return ""
    data = archive.small.get(path)
    kids = children(desc.media_type, data) if data is not None else []
    image_id = ""
    if desc.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
        for kid in kids:
            image_id = await _write_tree(store, archive, kid, lease, required=False) or image_id
        if not image_id:
            raise ArchiveError(f"invalid archive: no manifest of index {desc.digest} is in the archive")
    else:
        for kid in kids:
            await _write_tree(store, archive, kid, lease, required=True)
        if kids:
            image_id = kids[0].digest
    digest, _, _ = await _blob(store, archive, path, lease, gc_labels(desc.media_type, data) if data else None)
    if digest != desc.digest:
        raise ArchiveError(f"invalid archive: blob {desc.digest} does not match its content ({digest})")
    return image_id
