"""An image's filesystem written into a plain directory: its layers applied in order, whiteouts honoured.

For ``k3c build --output``, as BuildKit's local exporter gives it: the files of the built stage, not an
image. The CLI has the image as an archive (the ``save`` subresource) and applies its layers here, on
the client's side, so nothing needs root or a mount.

Each layer is a tar in the OCI layer format: ``.wh.NAME`` deletes ``NAME`` from the layers below,
``.wh..wh..opq`` empties its directory of what the layers below put there. Members are extracted with
tarfile's ``tar`` filter, so no path, and no symlink already written, can lead outside the destination.
Absolute symlink targets are kept as written, as BuildKit keeps them.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tarfile
from pathlib import Path
from typing import IO

__all__ = ["apply_layer", "unpack_archive"]

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def unpack_archive(archive: Path, dest: Path) -> None:
    """Apply every layer of the one image in a docker-archive or OCI archive (with its ``manifest.json``)."""
    with tarfile.open(archive) as outer:
        try:
            entries = json.load(_member(outer, "manifest.json"))
        except (KeyError, ValueError):
            raise ValueError(f"{archive}: not an image archive (no manifest.json)") from None
        if len(entries) != 1:
            raise ValueError(f"{archive}: holds {len(entries)} images, not one")
        for name in entries[0].get("Layers") or []:
            with tarfile.open(fileobj=_member(outer, name), mode="r:*") as layer:
                apply_layer(layer, dest)


def _member(outer: tarfile.TarFile, name: str) -> IO[bytes]:
    f = outer.extractfile(name)
    if f is None:
        raise KeyError(name)
    return f


def apply_layer(layer: tarfile.TarFile, dest: Path) -> None:
    """One layer over what ``dest`` holds already."""
    opaque_done: set[str] = set()
    for member in layer:
        path = posixpath.normpath(member.name.lstrip("/"))
        if path in (".", "") or path.startswith(".."):
            continue
        parent, base = posixpath.split(path)
        if base == OPAQUE:
            if parent not in opaque_done:
                _empty(dest, parent)
                opaque_done.add(parent)
            continue
        if base.startswith(WHITEOUT):
            _remove(_inside(dest, posixpath.join(parent, base[len(WHITEOUT):])))
            continue
        target = _inside(dest, path)
        present = target.is_symlink() or target.exists()
        if present and not (member.isdir() and target.is_dir() and not target.is_symlink()):
            _remove(target)  # what the layers below had there gives way, unless a directory meets one
        layer.extract(member, dest, filter="tar")


def _inside(dest: Path, rel: str) -> Path:
    """``dest/rel`` with every parent resolved, refused if it leads out of ``dest``."""
    root = dest.resolve()
    parent = (root / rel).parent.resolve()
    if parent != root and root not in parent.parents:
        raise ValueError(f"layer path {rel!r} leads outside {dest}")
    return parent / posixpath.basename(rel)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def _empty(dest: Path, rel: str) -> None:
    d = _inside(dest, rel) if rel else dest
    if d.is_dir() and not d.is_symlink():
        for child in d.iterdir():
            _remove(child)
