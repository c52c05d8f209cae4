"""An image's filesystem written into a plain directory: its layers applied in order, whiteouts honoured.

For ``k3c build --output``, as BuildKit's local exporter gives it: the files of the built stage, not an
image. The CLI has the image as an archive (the ``save`` subresource) and applies its layers here, on
the client's side, so nothing needs root or a mount.

Each layer is a tar in the OCI layer format: ``.wh.NAME`` deletes ``NAME`` from the layers below,
``.wh..wh..opq`` empties its directory of what the layers below put there. Layers come from images, so
from anyone: members are written by :mod:`k3c.untar`, which keeps every path, hard link and write-through
of a symlink inside the destination, skips device nodes and sets no owners. Absolute symlink targets are
kept as written, as BuildKit keeps them.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from pathlib import Path
from typing import IO

from k3c.untar import Extractor, UntarError, open_archive

__all__ = ["apply_layer", "unpack_archive"]

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def unpack_archive(archive: Path, dest: Path) -> None:
    """Apply every layer of the one image in a docker-archive or OCI archive (with its ``manifest.json``)."""
    with open_archive(archive) as outer:
        try:
            entries = json.load(_member(outer, "manifest.json"))
        except (KeyError, ValueError):
            raise ValueError(f"{archive}: not an image archive (no manifest.json)") from None
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
            raise ValueError(f"{archive}: holds {len(entries) if isinstance(entries, list) else 'no'} images, not one")
        try:
            with Extractor(dest) as out:
                for name in entries[0].get("Layers") or []:
                    with open_archive(fileobj=_member(outer, str(name))) as layer:
                        apply_layer(layer, out)
        except KeyError as err:
            raise ValueError(f"{archive}: layer {err} is missing") from None
        except tarfile.TarError as err:
            raise UntarError(str(err)) from None


def _member(outer: tarfile.TarFile, name: str) -> IO[bytes]:
    f = outer.extractfile(name)
    if f is None:
        raise KeyError(name)
    return f


def apply_layer(layer: tarfile.TarFile, out: Extractor) -> None:
    """One layer over what ``out``'s destination holds already."""
    opaque_done: set[str] = set()
    for member in layer:
        parent, base = posixpath.split(member.name)
        if base == OPAQUE:
            if parent not in opaque_done:
                out.empty(parent)
                opaque_done.add(parent)
        elif base.startswith(WHITEOUT):
            out.remove(posixpath.join(parent, base[len(WHITEOUT):]))
        else:
            out.extract(layer, member)
