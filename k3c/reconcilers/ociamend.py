"""What CRI cannot say, as edits of the OCI spec containerd generated: rlimits, pids limit, tmpfs, /dev/shm.

CRI's ContainerConfig has no field for these (docker's ``--ulimit``, ``--pids-limit``, ``--tmpfs`` and
``--mount type=tmpfs``, ``--shm-size``). containerd builds the OCI spec at CreateContainer and reads it back
from the container's record at StartContainer; the reconciler edits that record in between
(:class:`k3c.cri.containerspecs.SpecClient`), with :func:`amend` below. Pure functions: the same spec in
gives the same spec out, so every edit is tested without a runtime.
"""

from __future__ import annotations

from typing import Any

from k3c.units import ram_in_bytes

#: ``-1`` in a ulimit: no limit (RLIM_INFINITY).
RLIM_INFINITY = 2 ** 64 - 1
#: docker's options for a tmpfs before the user's own (later options win in mount(8)).
TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev"]
SHM_DEFAULTS = ["nosuid", "noexec", "nodev", "mode=1777"]


class AmendError(ValueError):
    """A value the runtime spec cannot take (bad size, a limit out of range)."""


def needs_amendment(spec: dict[str, Any]) -> bool:
    """Whether the LocalContainer asks for anything CRI could not pass on."""
    return bool(spec.get("ulimits") or (spec.get("pidsLimit") or 0) > 0 or spec.get("tmpfs")
                or spec.get("shmSize"))


def amend(oci: dict[str, Any], spec: dict[str, Any]) -> None:
    """Edit the OCI spec ``oci`` (in place) to carry the LocalContainer ``spec``'s CRI-less fields."""
    _rlimits(oci, spec.get("ulimits") or [])
    if (spec.get("pidsLimit") or 0) > 0:
        oci.setdefault("linux", {}).setdefault("resources", {})["pids"] = {"limit": int(spec["pidsLimit"])}
    if spec.get("shmSize") and spec.get("ipcMode") != "host":
        _shm(oci, _size(str(spec["shmSize"]), "shmSize"))
    for entry in spec.get("tmpfs") or []:
        _tmpfs(oci, entry)


def _rlimit_value(value: int) -> int:
    return RLIM_INFINITY if value < 0 else int(value)


def _rlimits(oci: dict[str, Any], ulimits: list[dict[str, Any]]) -> None:
    """The container's rlimits: each named one replaces the runtime's default of that type."""
    if not ulimits:
        return
    process = oci.setdefault("process", {})
    limits = {r["type"]: r for r in process.get("rlimits") or []}
    for u in ulimits:
        soft, hard = _rlimit_value(u["soft"]), _rlimit_value(u["hard"])
        if soft > hard:
            raise AmendError(f"ulimit {u['name']}: soft limit {u['soft']} is above the hard limit {u['hard']}")
        kind = "RLIMIT_" + str(u["name"]).upper()
        limits[kind] = {"type": kind, "soft": soft, "hard": hard}
    process["rlimits"] = list(limits.values())


def _size(text: str, what: str) -> int:
    try:
        size = ram_in_bytes(text)
    except ValueError:
        raise AmendError(f"{what}: invalid size {text!r}") from None
    if size <= 0:
        raise AmendError(f"{what}: {text!r} is not a size above 0")
    return size


def _without_mount(oci: dict[str, Any], destination: str) -> list[dict[str, Any]]:
    return [m for m in oci.get("mounts") or [] if m.get("destination", "").rstrip("/") != destination.rstrip("/")]


def _shm(oci: dict[str, Any], size: int) -> None:
    """A /dev/shm of its own, of ``size`` bytes, instead of the sandbox's (64 MiB, fixed by containerd)."""
    mounts = _without_mount(oci, "/dev/shm")
    mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                   "options": [*SHM_DEFAULTS, f"size={size}"]})
    oci["mounts"] = mounts


def _tmpfs(oci: dict[str, Any], entry: dict[str, Any]) -> None:
    """A tmpfs at ``mountPath`` (docker's ``--tmpfs PATH:OPTIONS``), replacing any mount there."""
    path = str(entry["mountPath"])
    options = [f"size={_size(o[5:], f'tmpfs {path}')}" if o.startswith("size=") else o
               for o in str(entry.get("options") or "").split(",") if o]
    mounts = _without_mount(oci, path)
    mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": [*TMPFS_DEFAULTS, *options]})
    oci["mounts"] = mounts
