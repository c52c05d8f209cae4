"""``docker exec -u``: turning ``name|uid[:group|gid]`` into the numeric user of an OCI process spec.

An OCI runtime only takes numbers, so names must be looked up the way docker does it: in the container's
own ``/etc/passwd`` and ``/etc/group`` (reached on the host through ``/proc/<pid>/root``), with the
user's primary group when none is given and every group listing the user as supplementary groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UserError(ValueError):
    """The user or group does not exist in the container (docker's wording)."""


@dataclass(frozen=True)
class _Passwd:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _rows(path: Path, fields: int) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    rows = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            rows.append(parts)
    return rows


def _passwd(root: Path) -> list[_Passwd]:
    out = []
    for p in _rows(root / "etc/passwd", 4):
        if p[2].isdigit() and p[3].isdigit():
            out.append(_Passwd(p[0], int(p[2]), int(p[3])))
    return out


def _groups(root: Path) -> list[_Group]:
    out = []
    for g in _rows(root / "etc/group", 4):
        if g[2].isdigit():
            out.append(_Group(g[0], int(g[2]), tuple(m for m in g[3].split(",") if m)))
    return out


def _find_user(root: Path, user: str) -> _Passwd | None:
    for entry in _passwd(root):
        if entry.name == user or (user.isdigit() and entry.uid == int(user)):
            return entry
    return None


def _find_gid(root: Path, group: str) -> int:
    if group.isdigit():
        return int(group)
    for entry in _groups(root):
        if entry.name == group:
            return entry.gid
    raise UserError(f"unable to find group {group}: no matching entries in group file")


def resolve_user(root: Path, spec: str) -> dict[str, Any]:
    """The OCI ``process.user`` for ``spec`` (``name|uid[:group|gid]``) inside the rootfs at ``root``."""
    user, _, group = spec.partition(":")
    if not user:
        raise UserError(f"invalid user {spec!r}")
    entry = _find_user(root, user)
    if entry is None and not user.isdigit():
        raise UserError(f"unable to find user {user}: no matching entries in passwd file")
    uid = entry.uid if entry else int(user)
    gid = _find_gid(root, group) if group else (entry.gid if entry else 0)
    extra: list[int] = []
    if entry is not None and not group:
        extra = sorted({g.gid for g in _groups(root) if entry.name in g.members} - {gid})
    return {"uid": uid, "gid": gid, "additionalGids": [gid, *extra]}
