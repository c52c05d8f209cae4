"""Fetch an image from a registry straight into containerd's content store, then name it.

k3c's normal pull goes through CRI (it also unpacks layers for running); this is the path for what CRI
cannot do: fetch into a namespace other than ``k8s.io``, or fetch a precise platform or digest for tools
(the builder's base images, benchmarks). It resolves a tag to a manifest (picking this machine's
platform from an index), streams each missing blob into the store under a lease (present blobs are
skipped), writes the manifests with the garbage-collection labels containerd needs, and only then creates
the image name: an interrupted fetch leaves no image, and its lease-protected leftovers expire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from k3c.cri.content import write_stream
from k3c.cri.imagestore import ContainerdImages, gc_labels
from k3c.oci.layout import DOCKER_MANIFEST_LIST, MEDIA_INDEX, Descriptor, host_architecture
from k3c.oci.reference import Reference

from .client import Manifest, RegistryClient
from .push import SOURCE_LABEL, BlobProgress

__all__ = ["pull_image", "resolve_platform"]

Report = Callable[[BlobProgress], None]


def resolve_platform(index: Manifest, arch: str | None = None, os_name: str = "linux") -> Descriptor:
    """The index entry for ``os/arch`` (this machine's by default)."""
    arch = arch or host_architecture()
    entries = [Descriptor.from_json(m) for m in json.loads(index.data).get("manifests", [])]
    for d in entries:
        p = d.platform or {}
        if p.get("architecture") == arch and p.get("os", os_name) == os_name:
            return d
    raise LookupError(f"no matching manifest for {os_name}/{arch} in the manifest list entries")


async def pull_image(store: ContainerdImages, client: RegistryClient, ref: Reference, *,
                     name: str | None = None, report: Report | None = None, concurrency: int = 3) -> Descriptor:
    """Fetch ``ref`` into the store and name it ``name`` (default: the reference); returns the root."""
    root = await client.get_manifest(ref.path, ref.object)
    manifests = [root]
    manifest = root
    if root.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
        entry = resolve_platform(root)
        manifest = await client.get_manifest(ref.path, entry.digest)
        manifests.append(manifest)
    doc = json.loads(manifest.data)
    blobs = [Descriptor.from_json(d) for d in [doc["config"], *doc.get("layers", [])]]
    source = {SOURCE_LABEL + ref.domain: ref.path}
    lease = await store.create_lease()
    try:
        limiter = asyncio.Semaphore(concurrency)

        async def one(d: Descriptor) -> None:
            async with limiter:
                await _fetch(store, client, ref.path, d, source, lease, report)

        await asyncio.gather(*(one(d) for d in blobs))
        for m in reversed(manifests):
            if await store.info(m.digest) is None:
                await store.write(m.digest, m.data, gc_labels(m.media_type, m.data), lease=lease)
        target = Descriptor(root.media_type, root.digest, root.size)
        await store.put(name or str(ref), target, lease=lease)
        return target
    finally:
        await store.delete_lease(lease)


async def _fetch(store: ContainerdImages, client: RegistryClient, repo: str, d: Descriptor,
                 labels: dict[str, str], lease: str, report: Report | None) -> None:
    b = BlobProgress(d.digest, d.size)
    if await store.info(d.digest) is not None:
        b.state, b.current = "Already exists", d.size
        _emit(report, b)
        return
    b.state = "Downloading"

    def progress(done: int) -> None:
        b.current = done
        _emit(report, b)

    await write_stream(store, client.fetch_blob(repo, d.digest), expected=d.digest, total=d.size,
                       labels=labels, lease=lease, progress=progress)
    b.state, b.current = "Download complete", d.size
    _emit(report, b)


def _emit(report: Report | None, b: BlobProgress) -> None:
    if report is not None:
        report(b)
