"""``load``: the images of a docker-archive or OCI-layout tar stream into containerd (:mod:`.formats`).

Loading reads the stream once, in order (``docker save`` puts ``manifest.json`` last): large members go
straight into the content store under a lease while small ones (JSON) stay in memory; once the stream
has ended the images are assembled, checked (every referenced blob present, digests and diff IDs
matching) and only then named. An archive that is cut short or inconsistent therefore names nothing,
and its blobs, unreferenced, go with the lease, collected at once.

Archives come from anyone, so memory is bounded: a member is held in memory only up to :data:`SMALL`
and while all held so far stays under :data:`MEMORY_BUDGET`, else it streams to the content store;
metadata (``manifest.json``, ``index.json``, configs, manifests) may not exceed :data:`METADATA_MAX`, the
distribution registry's manifest limit, and is read back from the store when it went there. Malformed
metadata is named in the error, never a crash (:mod:`.tarstream` bounds headers and gzip).
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

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
    MEDIA_MANIFEST,
    Descriptor,
    canonical_json,
    sha256_digest,
)
from k3c.oci.reference import InvalidReference, parse

from .formats import ArchiveError
from .tarstream import Member, TarReader

__all__ = ["LoadedImage", "load"]

#: Members up to this size are kept in memory while loading (manifests, configs, small layers)...
SMALL = 1 << 20
#: ... while all members held (data and names) stay under this.
MEMORY_BUDGET = 64 << 20
#: The largest metadata document read (manifest.json, index.json, a config, a manifest): distribution's limit.
METADATA_MAX = 4 << 20
_METADATA = {"manifest.json", "index.json", "oci-layout", "repositories"}
_MANIFESTS = (MEDIA_MANIFEST, DOCKER_MANIFEST, MEDIA_INDEX, DOCKER_MANIFEST_LIST)
#: The OCI digest grammar (algorithm:encoded).
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


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
    held: int = 0  #: bytes of names and data kept in memory

    def hold(self, n: int) -> None:
        self.held += n
        if self.held > MEMORY_BUDGET:
            raise ArchiveError(f"invalid archive: more than {_mib(MEMORY_BUDGET)} of member names and metadata")

    def fits(self, n: int) -> bool:
        return n <= SMALL and self.held + n <= MEMORY_BUDGET

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
    loaded: list[LoadedImage] = []
    done = False
    try:
        archive = await _read_members(store, chunks, lease)
        if "index.json" in archive.small:
            plans = await _plan_oci(store, archive, lease)
        elif "manifest.json" in archive.small:
            plans = await _plan_docker(store, archive, lease)
        else:
            raise ArchiveError("invalid archive: neither manifest.json (docker-archive) nor index.json (OCI layout)")
        for name, desc, image_id in plans:
            await store.put(name, desc, lease=lease)
            loaded.append(LoadedImage(name, desc.digest, image_id))
        done = True
        return loaded
    finally:  # after a failure, collect what was written now: nothing of a bad archive stays
        await store.delete_lease(lease, sync=not done)


async def _read_members(store: ContainerdImages, chunks: AsyncIterable[bytes], lease: str) -> _Archive:
    archive = _Archive()
    reader = TarReader(chunks)
    try:
        async for m in reader.members():
            archive.hold(len(m.name) + len(m.linkname))
            if m.is_link:
                base = posixpath.dirname(m.name) if m.type == tarfile.SYMTYPE else ""
                archive.links[m.name] = posixpath.normpath(posixpath.join(base, m.linkname)).lstrip("/")
                continue
            if not m.is_file:
                continue
            if m.name in _METADATA and m.size > METADATA_MAX:
                raise ArchiveError(f"invalid archive: {m.name} is larger than {_mib(METADATA_MAX)}")
            if m.name in _METADATA or archive.fits(m.size):
                archive.hold(m.size)
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
        for key, value in (labels or {}).items():  # (a manifest that went to the store while reading)
            await store.set_label(s.digest, key, value)
        return s.digest, s.size, s.magic
    data = archive.small.get(path)
    if data is None:
        raise ArchiveError(f"invalid archive: {path} is referenced but missing")
    digest = sha256_digest(data)
    if await store.info(digest) is None:
        await store.write(digest, data, labels, lease=lease)
    return digest, len(data), data[:8]


async def _metadata(store: ContainerdImages, archive: _Archive, path: str, what: str) -> bytes:
    """A metadata document's bytes, from memory or read back from the store, at most :data:`METADATA_MAX`."""
    path = archive.resolve(path)
    if path in archive.small:
        return archive.small[path]
    stored = archive.stored.get(path)
    if stored is None:
        raise ArchiveError(f"invalid archive: {what} missing")
    if stored.size > METADATA_MAX:
        raise ArchiveError(f"invalid archive: {what} is larger than {_mib(METADATA_MAX)}")
    return await store.read(stored.digest)


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ArchiveError(f"invalid archive: {what} is not JSON") from None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _mib(n: int) -> str:
    return f"{n >> 20} MiB"


def _layer_type(magic: bytes) -> str:
    if magic[:2] == b"\x1f\x8b":
        return DOCKER_LAYER_GZIP
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        return DOCKER_LAYER_ZSTD
    return DOCKER_LAYER


# ---- docker-archive ----


async def _plan_docker(store: ContainerdImages, archive: _Archive, lease: str) -> list[tuple[str, Descriptor, str]]:
    entries = _json(archive.small["manifest.json"], "manifest.json")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ArchiveError("invalid archive: manifest.json is not a list of images")
    plans = []
    for entry in entries:
        config_name, layer_paths, tags = entry.get("Config"), entry.get("Layers") or [], entry.get("RepoTags") or []
        if not isinstance(config_name, str) or not _strings(layer_paths) or not _strings(tags):
            raise ArchiveError("invalid archive: manifest.json: Config, Layers and RepoTags must be strings")
        config = await _metadata(store, archive, config_name, f"config {config_name}")
        diff_ids = _diff_ids(_json(config, f"config {config_name}"), config_name)
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
        names = [_normalized(t) for t in tags] or [config_digest]
        plans += [(n, desc, config_digest) for n in names]
    return plans


def _diff_ids(config: Any, name: str) -> list[str]:
    """The config's ``rootfs.diff_ids`` (none without a rootfs), checked to be a list of strings."""
    if isinstance(config, dict):
        rootfs = config.get("rootfs") or {}
        diff_ids: Any = (rootfs.get("diff_ids") or []) if isinstance(rootfs, dict) else None
        if _strings(diff_ids):
            return list(diff_ids)
    raise ArchiveError(f"invalid archive: config {name} has no list of diff IDs")


def _normalized(name: str) -> str:
    try:
        return str(parse(name))
    except InvalidReference as err:
        raise ArchiveError(f"invalid archive: bad image name {name!r}: {err}") from None


# ---- OCI layout ----


async def _plan_oci(store: ContainerdImages, archive: _Archive, lease: str) -> list[tuple[str, Descriptor, str]]:
    index = _json(archive.small["index.json"], "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        raise ArchiveError("invalid archive: index.json is not an image index")
    plans = []
    for entry in index.get("manifests", []):
        desc = _descriptor(entry, "index.json")
        root = Descriptor(desc.media_type, desc.digest, desc.size)
        image_id = await _write_tree(store, archive, root, lease, required=True)
        ann = desc.annotations or {}
        name = ann.get(ANNOTATION_CONTAINERD_NAME) or _ref_name(ann.get(ANNOTATION_REF_NAME, ""))
        plans.append((_normalized(name) if name else image_id, root, image_id))
    return plans


def _descriptor(entry: Any, what: str) -> Descriptor:
    """An OCI descriptor, its fields checked (mediaType, digest and size required, string annotations)."""
    ok = (isinstance(entry, dict) and isinstance(entry.get("mediaType"), str)
          and isinstance(entry.get("digest"), str) and _DIGEST.fullmatch(entry["digest"]) is not None
          and type(entry.get("size")) is int and entry["size"] >= 0
          and (entry.get("annotations") is None or (isinstance(entry["annotations"], dict) and all(
              isinstance(k, str) and isinstance(v, str) for k, v in entry["annotations"].items()))))
    if not ok:
        raise ArchiveError(f"invalid archive: {what}: invalid descriptor")
    return Descriptor.from_json(entry)


def _children(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """The descriptors a manifest or index references, each checked."""
    what = f"manifest {desc.digest}"
    doc = _json(data, what)
    if not isinstance(doc, dict):
        raise ArchiveError(f"invalid archive: {what} is not a JSON object")
    if desc.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
        entries = doc.get("manifests") or []
    else:
        layers = doc.get("layers") or []
        entries = [doc.get("config"), *layers] if isinstance(layers, list) else None
    if not isinstance(entries, list):
        raise ArchiveError(f"invalid archive: {what}: invalid descriptor")
    return [_descriptor(e, what) for e in entries]


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
    data = await _metadata(store, archive, path, f"manifest {desc.digest}") if desc.media_type in _MANIFESTS else None
    kids = _children(desc, data) if data is not None else []
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
