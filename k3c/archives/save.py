"""``save``: images from containerd's store as a docker-archive or OCI-layout tar stream (:mod:`.formats`).

The tar is produced while it is sent: blobs flow from the content store chunk by chunk and only manifests
and configs are held in memory. Every name is resolved before the first byte, so an unknown one fails
before anything is sent.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from k3c.cri.imagestore import ContainerdImages
from k3c.oci.layout import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    DOCKER_MANIFEST_LIST,
    MEDIA_INDEX,
    Descriptor,
    canonical_json,
    children,
    host_architecture,
)
from k3c.oci.reference import InvalidReference, parse

from .formats import FORMATS, ArchiveError
from .tarstream import end_of_archive, file_header, padding

__all__ = ["save"]


@dataclass(slots=True)
class _SaveImage:
    names: list[str]
    root: Descriptor
    manifest: dict[str, Any]
    manifest_desc: Descriptor
    config: bytes


async def _resolve(store: ContainerdImages, name: str) -> _SaveImage:
    record = await store.get(name)
    if record is None:
        raise ArchiveError(f"reference does not exist: {name}")
    root = Descriptor(record.target.media_type, record.target.digest, record.target.size)
    data = await store.read(root.digest)
    manifest_desc = root
    if root.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
        platforms = children(root.media_type, data)
        present = [d for d in platforms if await store.info(d.digest) is not None]
        if not present:
            raise ArchiveError(f"{name}: no platform manifest of the index is in the local store")
        arch = host_architecture()
        manifest_desc = next((d for d in present if (d.platform or {}).get("architecture") == arch), present[0])
        data = await store.read(manifest_desc.digest)
        if len(present) < len(platforms):  # a partial index: save the one platform whose blobs are here
            root = manifest_desc
    manifest = json.loads(data)
    config = await store.read(manifest["config"]["digest"])
    return _SaveImage([name], root, manifest, manifest_desc, config)


async def _collect(store: ContainerdImages, names: list[str]) -> list[_SaveImage]:
    by_root: dict[str, _SaveImage] = {}
    for name in names:
        img = await _resolve(store, str(parse(name)) if not name.startswith("sha256:") else name)
        if img.root.digest in by_root:
            if img.names[0] not in by_root[img.root.digest].names:
                by_root[img.root.digest].names.append(img.names[0])
        else:
            by_root[img.root.digest] = img
    return list(by_root.values())


async def save(store: ContainerdImages, names: list[str], fmt: str = "docker-archive") -> AsyncIterator[bytes]:
    """Stream a tar of the named images. Every name is resolved before the first byte is produced, so
    an unknown name fails cleanly (the caller still sees :class:`ArchiveError` up front)."""
    if fmt not in FORMATS:
        raise ArchiveError(f"unknown archive format {fmt!r} (use docker-archive or oci-archive)")
    images = await _collect(store, names)
    return _oci_stream(store, images) if fmt == "oci-archive" else _docker_stream(store, images)


async def _file(name: str, data: bytes) -> AsyncIterator[bytes]:
    yield file_header(name, len(data)) + data + padding(len(data))


async def _blob_file(store: ContainerdImages, name: str, digest: str, size: int) -> AsyncIterator[bytes]:
    yield file_header(name, size)
    sent = 0
    async for chunk in store.read_chunks(digest):
        sent += len(chunk)
        yield chunk
    if sent != size:
        raise ArchiveError(f"blob {digest}: read {sent} bytes, expected {size}")
    yield padding(size)


def _repo_tags(names: list[str]) -> list[str]:
    tags = []
    for n in names:
        try:
            ref = parse(n)
        except InvalidReference:
            continue
        if ref.tag:
            tags.append(ref.familiar())
    return tags


async def _oci_stream(store: ContainerdImages, images: list[_SaveImage]) -> AsyncIterator[bytes]:
    entries: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    blobs: dict[str, int] = {}  # digest → size, every blob once, in first-seen order
    for img in images:
        for name in img.names:
            ref = parse(name)
            ann = {ANNOTATION_CONTAINERD_NAME: str(ref), ANNOTATION_REF_NAME: ref.tag or ref.digest}
            entries.append(Descriptor(img.root.media_type, img.root.digest, img.root.size, ann).to_json())
        await _tree(store, img.root, blobs)
        layers = [f"blobs/sha256/{d['digest'][7:]}" for d in img.manifest["layers"]]
        docker_manifest.append({"Config": f"blobs/sha256/{img.manifest['config']['digest'][7:]}",
                                "RepoTags": _repo_tags(img.names), "Layers": layers})
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
    async for part in _file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})):
        yield part
    async for part in _file("index.json", canonical_json(index)):
        yield part
    async for part in _file("manifest.json", canonical_json(docker_manifest)):
        yield part
    for digest, size in blobs.items():
        async for part in _blob_file(store, f"blobs/sha256/{digest[7:]}", digest, size):
            yield part
    yield end_of_archive()


async def _tree(store: ContainerdImages, desc: Descriptor, out: dict[str, int]) -> None:
    """Every locally present blob under ``desc`` (an index's absent platforms are left out)."""
    if desc.digest in out or await store.info(desc.digest) is None:
        return
    out[desc.digest] = desc.size
    if desc.media_type.endswith("json") or "manifest" in desc.media_type:
        data = await store.read(desc.digest)
        for child in children(desc.media_type, data):
            await _tree(store, child, out)


async def _docker_stream(store: ContainerdImages, images: list[_SaveImage]) -> AsyncIterator[bytes]:
    manifest_json, written = [], set()
    for img in images:
        config_doc = json.loads(img.config)
        diff_ids = config_doc.get("rootfs", {}).get("diff_ids", [])
        config_name = f"{img.manifest['config']['digest'][7:]}.json"
        async for part in _file(config_name, img.config):
            yield part
        layer_names = []
        for layer, diff_id in zip(img.manifest["layers"], diff_ids, strict=False):
            path = f"{diff_id[7:]}/layer.tar"
            layer_names.append(path)
            if path in written:
                continue
            written.add(path)
            async for part in _layer_tar(store, path, layer):
                yield part
        manifest_json.append({"Config": config_name, "RepoTags": _repo_tags(img.names), "Layers": layer_names})
    async for part in _file("manifest.json", canonical_json(manifest_json)):
        yield part
    yield end_of_archive()


async def _layer_tar(store: ContainerdImages, path: str, layer: dict[str, Any]) -> AsyncIterator[bytes]:
    media, digest = layer["mediaType"], layer["digest"]
    if "zstd" in media:
        raise ArchiveError(f"layer {digest} is zstd-compressed: save it as oci-archive instead")
    if not media.endswith("gzip"):
        async for part in _blob_file(store, path, digest, int(layer["size"])):
            yield part
        return
    size = 0
    async for chunk in _inflate(store.read_chunks(digest)):
        size += len(chunk)
    yield file_header(path, size)
    async for chunk in _inflate(store.read_chunks(digest)):
        yield chunk
    yield padding(size)


async def _inflate(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    z = zlib.decompressobj(wbits=31)
    async for chunk in chunks:
        out = z.decompress(chunk)
        while z.unused_data:  # concatenated gzip members
            rest = z.unused_data
            out += z.flush()
            z = zlib.decompressobj(wbits=31)
            out += z.decompress(rest)
        if out:
            yield out
    tail = z.flush()
    if tail:
        yield tail
