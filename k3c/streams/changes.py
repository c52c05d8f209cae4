"""`docker diff`: what a container changed in its filesystem, from its overlay upper directory.

The container's root is an overlay mount made by containerd; its options (in the container's
``/proc/PID/mountinfo``) name the upper directory, where every change lands, and the image's layers
below it. A whiteout (a 0:0 character device) is a deletion, an entry the layers also have is a change,
anything else an addition; an opaque directory hides what the layers had below it. As in docker (whose
runtime files live in a separate init layer), what the runtime mounts into the container (/proc, /etc/hosts,
volumes …) is not a change of the container, nor is a directory copied up only to hold such a mount point.
All of it is read on the host, symlinks never followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: docker's change kinds (the API's Kind: 0 modified, 1 added, 2 deleted).
Kind = Literal["C", "A", "D"]
KIND_NUMBER: dict[str, int] = {"C": 0, "A": 1, "D": 2}
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


class NoOverlay(Exception):
    """The container's root is not an overlay mount k3c can read."""


@dataclass(frozen=True)
class RootLayers:
    """The container's overlay: its upper directory and the image's layers (topmost first)."""

    upper: Path
    lowers: list[Path]
    mountpoints: frozenset[str]  #: paths mounted over inside the container (not its own changes)


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    return text.encode().decode("unicode_escape") if "\\" in text else text


def root_layers(pid: int) -> RootLayers:
    """The overlay behind the root of the container whose init is ``pid``."""
    upper, lowers, points = "", [], set()
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        point = _unescape(fields[4])
        if point == "/" and rest[0] == "overlay":
            for option in rest[2].split(","):
                key, _, value = option.partition("=")
                if key == "upperdir":
                    upper = _unescape(value)
                elif key == "lowerdir":
                    lowers = [_unescape(p) for p in value.split(":")]
        elif point != "/":
            points.add(point)
    if not upper:
        raise NoOverlay("the container's root is not an overlay with an upper directory")
    return RootLayers(Path(upper), [Path(p) for p in lowers], frozenset(points))


def _in_lowers(layers: RootLayers, rel: str) -> bool:
    for lower in layers.lowers:
        try:
            os.lstat(lower / rel)
            return True
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            return False
    return False


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    for attr in _OPAQUE:
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def changes(layers: RootLayers) -> list[tuple[Kind, str]]:
    """(kind, path) of every change, in docker's order (see :func:`in_docker_order`)."""
    found: dict[str, Kind] = {}
    copied_up: set[str] = set()  # directories the layers have too: changed only if something below is
    for dirpath, dirnames, filenames in os.walk(layers.upper):
        rel_dir = os.path.relpath(dirpath, layers.upper)
        base = "" if rel_dir == "." else rel_dir
        for name in [*dirnames, *filenames]:
            rel = f"{base}/{name}" if base else name
            path = "/" + rel
            if path in layers.mountpoints:
                continue
            st = os.lstat(Path(dirpath) / name)
            if _whiteout(st):
                found[path] = "D"
            elif not _in_lowers(layers, rel):
                found[path] = "A"
            elif stat.S_ISDIR(st.st_mode) and not _opaque(Path(dirpath) / name):
                copied_up.add(path)
            else:
                found[path] = "C"
        dirnames[:] = [d for d in dirnames if f"/{base}/{d}".replace("//", "/") not in layers.mountpoints]
    for directory in copied_up:
        if any(p.startswith(directory + "/") for p in found):
            found[directory] = "C"
    return in_docker_order(found)


def in_docker_order(found: dict[str, Kind]) -> list[tuple[Kind, str]]:
    """Depth first, a directory before what it holds; in each directory the changed and added entries
    (by name), then the deleted ones, as docker's tree comparison lists them."""
    children: dict[str, list[str]] = {}
    for path in found:
        children.setdefault(os.path.dirname(path), []).append(path)
    out: list[tuple[Kind, str]] = []

    def visit(directory: str) -> None:
        entries = sorted(children.get(directory, []), key=lambda p: (found[p] == "D", p))
        for path in entries:
            out.append((found[path], path))
            visit(path)

    visit("/")
    return out
