"""Gzip forms of uncompressed layers, for a push.

k3c's own builds keep layers uncompressed in containerd (written straight by the Diff service, which is
what makes them quick), and `k3c load` of a docker archive brings uncompressed layers too. A registry
should get them compressed, as docker pushes them: fewer bytes to send and to pull on every node. So a
push rewrites the manifests it sends, with a gzip blob per uncompressed layer; the config, and so the
image ID, stay the same (its ``diff_ids`` are the uncompressed digests either way), while the pushed
manifest gets a digest of its own, as with docker.

The gzip blob is written to a temporary file, never into containerd: nothing is stored twice. Its digest
and size are remembered in a label on the uncompressed blob (:data:`GZIP_LABEL`), so a later push whose
registry already has that blob neither compresses again nor sends anything. Compression is deterministic
(no name, no time in the gzip header), so compressing again gives the same digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from k3c.cri.imagestore import ContainerdImages
from k3c.oci.layout import (
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST_LIST,
    MEDIA_INDEX,
    MEDIA_LAYER,
    MEDIA_LAYER_GZIP,
    sha256_digest,
)

from .client import Manifest, RegistryClient

__all__ = ["GZIP_LABEL", "Gzipped", "LayerCompressor"]

#: uncompressed layer media type -> the gzip one pushed instead
GZIP_OF = {MEDIA_LAYER: MEDIA_LAYER_GZIP, DOCKER_LAYER: DOCKER_LAYER_GZIP}
#: on an uncompressed layer blob: ``<digest>,<size>`` of its gzip form, as last pushed
GZIP_LABEL = "k3c.io/gzip"
LEVEL = 6  #: zlib's default, as docker's compression


@dataclass(slots=True)
class Gzipped:
    """The gzip form of one layer: where its bytes are (None: the registry has them already)."""

    digest: str
    size: int
    path: Path | None = None


@dataclass
class LayerCompressor:
    """Rewrites the manifests of one push; use as ``async with`` so its temporary files always go."""

    store: ContainerdImages
    client: RegistryClient
    repo: str
    scopes: tuple[str, ...]
    layers: dict[str, Gzipped] = field(default_factory=dict)  #: uncompressed digest -> gzip form
    _files: dict[str, Path] = field(default_factory=dict)  #: gzip digest -> its temporary file
    _dir: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> LayerCompressor:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._dir is not None:
            await asyncio.to_thread(self._dir.cleanup)

    def source(self, digest: str) -> Path | None:
        """The file holding a blob this push made (None: read it from containerd)."""
        return self._files.get(digest)

    async def rewrite(self, root: Manifest, manifests: list[Manifest]) -> tuple[Manifest, list[Manifest]]:
        """``root`` and ``manifests`` (as push's ``_local_manifests`` gives them) with gzip layers."""
        new: dict[str, Manifest] = {}
        for m in manifests:
            changed = await self._manifest(m)
            if changed is not None:
                new[m.digest] = changed
        if not new:
            return root, manifests
        out = [new.get(m.digest, m) for m in manifests]
        if root.digest in new:
            return new[root.digest], out
        return _index_with(root, new), out

    async def _manifest(self, m: Manifest) -> Manifest | None:
        if m.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
            return None
        doc = json.loads(m.data)
        layers = doc.get("layers") or []
        if not any(d.get("mediaType") in GZIP_OF for d in layers):
            return None
        for d in layers:
            if d.get("mediaType") in GZIP_OF:
                g = await self._gzipped(d["digest"])
                d.update({"mediaType": GZIP_OF[d["mediaType"]], "digest": g.digest, "size": g.size})
        data = json.dumps(doc, separators=(",", ":")).encode()
        return Manifest(m.media_type, data, sha256_digest(data))

    async def _gzipped(self, digest: str) -> Gzipped:
        known = self.layers.get(digest)
        if known is not None:
            return known
        info = await self.store.info(digest)
        remembered = _parse_label((info.labels if info is not None else {}).get(GZIP_LABEL, ""))
        if remembered is not None and await self.client.blob_size(self.repo, remembered.digest,
                                                                  self.scopes) is not None:
            self.layers[digest] = remembered
            return remembered
        g = await self._compress(digest)
        if remembered is None or remembered.digest != g.digest:
            await self.store.set_label(digest, GZIP_LABEL, f"{g.digest},{g.size}")
        self.layers[digest] = g
        return g

    async def _compress(self, digest: str) -> Gzipped:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="k3c-push-")
        path = Path(self._dir.name) / digest.replace(":", "-")
        squeezer = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)  # 31: gzip wrapper, empty header fields
        h = hashlib.sha256()

        def put(data: bytes) -> int:
            h.update(data)
            out.write(data)
            return len(data)

        def put_compressed(data: bytes) -> int:
            return put(squeezer.compress(data))

        size = 0
        with path.open("wb") as out:
            async for chunk in self.store.read_chunks(digest):
                size += await asyncio.to_thread(put_compressed, chunk)
            size += put(squeezer.flush())
        g = Gzipped("sha256:" + h.hexdigest(), size, path)
        self._files[g.digest] = path
        return g


def _parse_label(value: str) -> Gzipped | None:
    digest, _, size = value.partition(",")
    return Gzipped(digest, int(size)) if digest.startswith("sha256:") and size.isdigit() else None


def _index_with(index: Manifest, new: dict[str, Manifest]) -> Manifest:
    """The index with its children that were rewritten pointing at their new digests and sizes."""
    doc = json.loads(index.data)
    for d in doc.get("manifests") or []:
        m = new.get(d.get("digest"))
        if m is not None:
            d.update({"digest": m.digest, "size": m.size})
    data = json.dumps(doc, separators=(",", ":")).encode()
    return Manifest(index.media_type, data, sha256_digest(data))
