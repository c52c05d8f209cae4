"""The native engine's caches: one layer per step key, and one image per whole-build key.

Both are small JSON records on disk pointing into containerd, which holds the data: layer blobs and
committed snapshots, kept from the garbage collector by one lease (:data:`LEASE`). A record is only
trusted while containerd still has what it names, so a lost blob or snapshot is a cache miss, never a
broken image. :func:`prune` is ``docker builder prune -a``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from k3c.cri.imagestore import ContainerdImages
from k3c.cri.snapshots import LayerBlob, Snapshots

__all__ = ["LEASE", "LayerCache", "prune"]

#: The containerd lease holding every cached layer and snapshot.
LEASE = "k3c-build-cache"


class LayerCache:
    """Step records (``cache/KEY.json``) and whole-build records (``records/KEY.json``) under ``root``."""

    def __init__(self, root: Path) -> None:
        self.steps_dir = root / "cache"
        self.builds_dir = root / "records"

    def create_dirs(self) -> None:
        for d in (self.steps_dir, self.builds_dir):
            d.mkdir(parents=True, exist_ok=True)

    async def layer(self, key: str, store: ContainerdImages, snaps: Snapshots) -> LayerBlob | None:
        """The layer a step with this key made, if containerd still has its blob and snapshot."""
        rec = _read(self.steps_dir / f"{key}.json")
        try:
            blob = LayerBlob(rec["media_type"], rec["digest"], int(rec["size"]), rec["diff_id"])
            chain = rec["chain"]
        except (KeyError, TypeError, ValueError):
            return None
        if await snaps.exists(chain) and await store.info(blob.digest) is not None:
            return blob
        return None

    def save_layer(self, key: str, blob: LayerBlob, chain: str) -> None:
        """Remember a step's layer and the snapshot it was committed as."""
        _write(self.steps_dir / f"{key}.json", {"media_type": blob.media_type, "digest": blob.digest,
                                                "size": blob.size, "diff_id": blob.diff_id, "chain": chain})

    def layers(self) -> dict[str, int]:
        """Digest -> size of every cached step's layer (a layer two steps share counts once)."""
        out: dict[str, int] = {}
        for path in self.steps_dir.glob("*.json"):
            rec = _read(path)
            if isinstance(rec.get("digest"), str):
                out[rec["digest"]] = int(rec.get("size") or 0)
        return out

    def build(self, key: str) -> dict[str, Any]:
        """What an earlier build with this key made (``manifest``, ``chain``, ``steps``), or {}."""
        return _read(self.builds_dir / f"{key}.json")

    def save_build(self, key: str, manifest: bytes, chain: str, steps: list[str]) -> None:
        _write(self.builds_dir / f"{key}.json", {"manifest": manifest.decode(), "chain": chain, "steps": steps})


async def prune(store: ContainerdImages, root: Path) -> None:
    """Drop the whole cache: the lease (synchronously collected), the records and the directories of
    ``RUN --mount=type=cache``. Images stay."""
    await store.delete_lease(LEASE, sync=True)
    cache = LayerCache(root)
    for d in (cache.steps_dir, cache.builds_dir):
        for f in d.glob("*.json"):
            f.unlink()
    shutil.rmtree(root / "cachemounts", ignore_errors=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def dir_size(path: Path) -> int:
    """Bytes a directory tree takes on disk (what removing it frees)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total
