"""Push an image from containerd's content store to a registry (containerd 1.6's API has no push).

The blobs are read with the Content service's ``Read`` stream and sent with :class:`~.client.RegistryClient`
without ever being held whole in memory. Order matters to registries: every blob first (config and layers,
a few at once), then each manifest, then the index, then the tag. A blob the repository already has is
skipped after a ``HEAD``; one that containerd recorded as pulled from another repository of the same
registry (its ``containerd.io/distribution.source.<host>`` label) is mounted instead of uploaded.

Uncompressed layers (k3c's own builds, docker archives) are sent gzip-compressed, as docker sends them
(:mod:`.compress`): the pushed manifest then has a digest of its own, the image ID stays.

An index whose platform manifests are not all local (CRI pulls only this machine's) cannot be pushed as
is: a registry refuses an index naming manifests it lacks. Then only the local platform's manifest is
pushed, as docker does with a partially pulled multi-platform image.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from k3c.cri.imagestore import ContainerdImages
from k3c.oci.layout import DOCKER_MANIFEST_LIST, MEDIA_INDEX, Descriptor, children, host_architecture
from k3c.oci.reference import Reference

from .auth import push_scope
from .client import Manifest, RegistryClient
from .compress import LayerCompressor
from .errors import RegistryError

__all__ = ["BlobProgress", "PushResult", "push_image"]

SOURCE_LABEL = "containerd.io/distribution.source."


@dataclass(slots=True)
class BlobProgress:
    """One blob's push state, docker's words: Waiting, Pushing, Pushed, Layer already exists, Mounted from R."""

    digest: str
    size: int
    state: str = "Waiting"
    current: int = 0


@dataclass(slots=True)
class PushResult:
    digest: str
    media_type: str
    size: int
    blobs: list[BlobProgress] = field(default_factory=list)


Report = Callable[[BlobProgress], None]


def _is_index(media_type: str) -> bool:
    return media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST)


async def _local_manifests(store: ContainerdImages, root: Descriptor) -> tuple[Manifest, list[Manifest]]:
    """The manifest to push as the root, and the manifests under it (itself when it is a plain manifest)."""
    data = await store.read(root.digest)
    top = Manifest(root.media_type, data, root.digest)
    if not _is_index(root.media_type):
        return top, [top]
    kids = children(root.media_type, data)
    present = [d for d in kids if await store.info(d.digest) is not None]
    if len(present) == len(kids):
        return top, [Manifest(d.media_type, await store.read(d.digest), d.digest) for d in kids]
    if not present:
        raise RegistryError(f"none of the manifests of {root.digest} is in the local store")
    arch = host_architecture()
    chosen = next((d for d in present if (d.platform or {}).get("architecture") == arch), present[0])
    only = Manifest(chosen.media_type, await store.read(chosen.digest), chosen.digest)
    return only, [only]


async def _mount_source(store: ContainerdImages, digest: str, registry: str) -> str | None:
    info = await store.info(digest)
    if info is None:
        raise RegistryError(f"blob {digest} is not in the local content store (was the image fully pulled?)")
    repos = info.labels.get(SOURCE_LABEL + registry, "")
    return repos.split(",")[0] if repos else None


async def _read(store: ContainerdImages, digest: str) -> AsyncIterator[bytes]:
    async for chunk in store.read_chunks(digest):
        yield chunk


async def _read_file(path: Path, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while data := await asyncio.to_thread(f.read, chunk):
            yield data


async def push_image(
    store: ContainerdImages,
    client: RegistryClient,
    source: str,
    target: Reference,
    *,
    report: Report | None = None,
    concurrency: int = 5,
    chunk_size: int | None = None,
) -> PushResult:
    """Push the local image named ``source`` as ``target``; returns the pushed root's digest.

    ``report`` is called at every state change and as bytes flow (the caller throttles what it shows).
    """
    record = await store.get(source)
    if record is None:
        raise RegistryError(f"An image does not exist locally with the tag: {source}")
    root_desc = Descriptor(record.target.media_type, record.target.digest, record.target.size)
    repo = target.path
    await client.base()  # settle scheme and Basic auth once, before the blobs go in parallel
    async with LayerCompressor(store, client, repo, (push_scope(repo),)) as gzipped:
        root, manifests = await gzipped.rewrite(*await _local_manifests(store, root_desc))
        blobs = _blobs_of(manifests)
        await _send_blobs(store, client, target, blobs, gzipped, report, concurrency, chunk_size)
    for m in manifests:
        if m is not root:
            await client.put_manifest(repo, m.digest, m.media_type, m.data)
    digest = await client.put_manifest(repo, target.tag or root.digest, root.media_type, root.data)
    return PushResult(digest, root.media_type, root.size, blobs)


async def _send_blobs(store: ContainerdImages, client: RegistryClient, target: Reference, blobs: list[BlobProgress],
                      gzipped: LayerCompressor, report: Report | None, concurrency: int,
                      chunk_size: int | None) -> None:
    """Every blob the repository lacks, ``concurrency`` at a time (one ``HEAD`` each first)."""
    repo = target.path
    for b in blobs:
        _emit(report, b)
    limiter = asyncio.Semaphore(concurrency)
    present = await asyncio.gather(*(client.blob_size(repo, b.digest, (push_scope(repo),)) for b in blobs))

    async def one(b: BlobProgress, size: int | None) -> None:
        if size is not None:
            b.state, b.current = "Layer already exists", b.size
            _emit(report, b)
            return
        async with limiter:
            await _push_blob(store, client, repo, target.domain, b, report, chunk_size, gzipped.source(b.digest))

    await asyncio.gather(*(one(b, size) for b, size in zip(blobs, present, strict=True)))


def _blobs_of(manifests: list[Manifest]) -> list[BlobProgress]:
    seen: dict[str, BlobProgress] = {}
    for m in manifests:
        doc = json.loads(m.data)
        for d in [doc["config"], *doc.get("layers", [])]:
            if d["digest"] not in seen:
                seen[d["digest"]] = BlobProgress(d["digest"], int(d["size"]))
    return list(seen.values())


async def _push_blob(store: ContainerdImages, client: RegistryClient, repo: str, registry: str,
                     b: BlobProgress, report: Report | None, chunk_size: int | None, file: Path | None) -> None:
    """One blob, from containerd or (a layer gzipped for this push) from ``file``."""
    mount_from = await _mount_source(store, b.digest, registry) if file is None else None

    def progress(done: int) -> None:
        b.current = done
        _emit(report, b)

    b.state = "Pushing"
    _emit(report, b)
    reader = (lambda: _read_file(file)) if file is not None else (lambda: _read(store, b.digest))
    outcome = await client.push_blob(repo, b.digest, b.size, reader, mount_from=mount_from,
                                     chunk_size=chunk_size, progress=progress, check=False)
    b.current = b.size
    b.state = {"exists": "Layer already exists", "mounted": f"Mounted from {mount_from}"}.get(outcome, "Pushed")
    _emit(report, b)


def _emit(report: Report | None, b: BlobProgress) -> None:
    if report is not None:
        report(b)
