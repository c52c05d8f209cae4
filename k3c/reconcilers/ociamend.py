"""What CRI cannot say, as edits of the OCI spec containerd generated: rlimits, pids limit, tmpfs, /dev/shm,
a seccomp profile given inline.

CRI's ContainerConfig has no field for these (docker's ``--ulimit``, ``--pids-limit``, ``--tmpfs`` and
``--mount type=tmpfs``, ``--shm-size``; its seccomp profile can only name a file on the node, while docker's
``--security-opt seccomp=FILE`` sends the file's content). containerd builds the OCI spec at CreateContainer and reads it back
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
                or spec.get("shmSize") or is_seccomp_document(str(spec.get("seccompProfile") or "")))


def set_pids_limit(oci: dict[str, Any], limit: int | None) -> None:
    """`docker update --pids-limit` on a created container's OCI spec: the new limit, or none (``-1``, runc's
    "max") when the spec has none (0, -1 or absent) but the container was created with one."""
    resources = oci.setdefault("linux", {}).setdefault("resources", {})
    if (limit or 0) > 0:
        resources["pids"] = {"limit": int(limit or 0)}
    elif resources.get("pids"):
        resources["pids"] = {"limit": -1}


def amend(oci: dict[str, Any], spec: dict[str, Any]) -> None:
    """Edit the OCI spec ``oci`` (in place) to carry the LocalContainer ``spec``'s CRI-less fields."""
    _rlimits(oci, spec.get("ulimits") or [])
    if (spec.get("pidsLimit") or 0) > 0:
        oci.setdefault("linux", {}).setdefault("resources", {})["pids"] = {"limit": int(spec["pidsLimit"])}
    if spec.get("shmSize"):
        if spec.get("ipcMode") == "host":
            raise AmendError("shmSize: with ipcMode host the container uses the node's /dev/shm")
        _shm(oci, _size(str(spec["shmSize"]), "shmSize"))
    for entry in spec.get("tmpfs") or []:
        _tmpfs(oci, entry)
    profile = str(spec.get("seccompProfile") or "")
    if is_seccomp_document(profile) and not spec.get("privileged"):
        oci.setdefault("linux", {})["seccomp"] = seccomp_from_docker(profile, oci)


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


# ---- seccomp profiles in docker's format ---------------------------------------------------------------
#: ``uname -m`` → libseccomp's name of the native architecture.
_SECCOMP_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "armv7l": "SCMP_ARCH_ARM",
                   "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}


def is_seccomp_document(value: str) -> bool:
    """Whether ``seccompProfile`` holds a profile (docker's JSON) rather than a name (unconfined)."""
    return value.lstrip().startswith("{")


def _kernel_at_least(minimum: str) -> bool:
    import os

    def numbers(text: str) -> list[int]:
        return [int(p) for p in text.split("-")[0].split(".")[:2] if p.isdigit()]

    return not minimum or numbers(os.uname().release) >= numbers(minimum)


def _applies(rule: dict[str, Any], caps: set[str], arch: str) -> bool:
    """docker's includes/excludes of one syscall rule: capabilities, architectures, minimum kernel."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if not _kernel_at_least(str(inc.get("minKernel") or "")):
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    return not (exc.get("arches") and arch in exc["arches"])


def seccomp_from_docker(document: str, oci: dict[str, Any]) -> dict[str, Any]:
    """docker's seccomp profile (``--security-opt seccomp=FILE``) → the OCI spec's ``linux.seccomp``, for the
    process's capabilities and this machine's architecture (as docker's daemon converts it)."""
    import json
    import platform

    try:
        profile = json.loads(document)
    except ValueError as err:
        raise AmendError(f"seccompProfile: not a JSON profile: {err}") from None
    if not isinstance(profile, dict) or not profile.get("defaultAction"):
        raise AmendError("seccompProfile: a profile needs a defaultAction")
    machine = platform.machine()
    arch = _SECCOMP_ARCHES.get(machine, machine)
    caps = {f"CAP_{c.removeprefix('CAP_')}" for c in (oci.get("process") or {}).get("capabilities", {})
            .get("bounding") or []}
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == arch:
            arches += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    if arches:
        out["architectures"] = arches
    rules = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, caps, arch):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        converted = {"names": names, "action": rule.get("action", "")}
        for key in ("errnoRet", "args"):
            if rule.get(key) is not None:
                converted[key] = rule[key]
        rules.append(converted)
    out["syscalls"] = rules
    return out
