"""Log rotation (docker's ``--log-opt max-size=…,max-file=…``), done the way the kubelet does it for CRI logs.

containerd appends to a container's log file and never rotates it. Every :data:`CHECK_INTERVAL` the
operator looks at the files of its running containers that have ``spec.logOptions``; one that reached
``maxSize`` is renamed to ``FILE.1`` (older ones shift to ``FILE.2``…, at most ``maxFile - 1`` kept),
then CRI's ReopenContainerLog makes containerd write to a fresh ``FILE``. If the reopen fails (the
container just exited) the rename is undone. Readers take ``FILE.N``…``FILE.1`` then ``FILE``
(:func:`k3c.streams.logs.log_files`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k3c.cri.errors import RuntimeCallError
from k3c.cri.runtime import CRIClient
from k3c.units import ram_in_bytes

log = logging.getLogger(__name__)

#: How often the log files are looked at (the kubelet: every 10 s).
CHECK_INTERVAL = 1.0


class LogOptionsError(ValueError):
    """``logOptions`` the operator cannot apply."""


@dataclass(frozen=True)
class Rotation:
    max_size: int
    max_files: int


def rotation(spec: dict[str, Any]) -> Rotation | None:
    """The rotation ``spec.logOptions`` asks for; None without ``maxSize``."""
    opts = spec.get("logOptions") or {}
    if not opts.get("maxSize"):
        return None
    try:
        size = ram_in_bytes(str(opts["maxSize"]))
    except ValueError:
        raise LogOptionsError(f"logOptions.maxSize: invalid size {opts['maxSize']!r}") from None
    if size <= 0:
        raise LogOptionsError("logOptions.maxSize must be above 0")
    return Rotation(size, max(1, int(opts.get("maxFile") or 1)))


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def remove_rotated(path: Path) -> None:
    """Delete ``FILE.1``, ``FILE.2``… (the container is being removed)."""
    n = 1
    while rotated(path, n).exists():
        rotated(path, n).unlink(missing_ok=True)
        n += 1


async def rotate_if_full(cri: CRIClient, path: Path, container_id: str, rule: Rotation) -> bool:
    """Rotate ``path`` if it reached the size limit; True if it did."""
    try:
        if path.stat().st_size < rule.max_size:
            return False
    except FileNotFoundError:
        return False
    keep = rule.max_files - 1
    target = rotated(path, 1) if keep else path.with_name(path.name + ".rotating")
    if keep:
        rotated(path, keep).unlink(missing_ok=True)
        for n in range(keep - 1, 0, -1):
            if rotated(path, n).exists():
                os.replace(rotated(path, n), rotated(path, n + 1))
    os.replace(path, target)
    try:
        await cri.reopen_container_log(container_id)
    except RuntimeCallError as err:
        log.debug("reopening the log of %s failed, rotation undone: %s", container_id[:12], err)
        os.replace(target, path)
        return False
    if not keep:
        target.unlink(missing_ok=True)
    return True
