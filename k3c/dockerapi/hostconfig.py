"""The run options of a docker create body (HostConfig's limits, mounts, hosts, security and namespaces;
Config's StopSignal and Healthcheck) as the LocalContainer spec fields `k3c run`'s flags write.

Why a module of its own: :mod:`k3c.dockerapi.createbody` decides which fields are honoured; this reads the
honoured run options, each through the same checks as the CLI's flags (:mod:`k3c.runoptions`,
:mod:`k3c.mountspec`, :mod:`k3c.signals`), so `docker run --ulimit …` through the socket and `k3c run
--ulimit …` make the same object. A refused value is a 400 with the check's words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from k3c import mountspec, runoptions
from k3c.dockerapi.bodies import strings as _strings
from k3c.dockerapi.bodies import typed as _typed
from k3c.dockerapi.errors import BadParameter
from k3c.mountspec import Mount, MountFields, Tmpfs
from k3c.signals import signal_number
from k3c.timefmt import format_duration_ns

_T = TypeVar("_T")
_H = "HostConfig"
#: the Healthcheck durations docker's daemon refuses below 1ms (0 means the default)
_MIN_HEALTH_NS = 1_000_000


def checked(check: Callable[..., _T], *args: Any) -> _T:
    """``check(*args)``, its ValueError (a shared check's refusal, in docker's words) as a 400."""
    try:
        return check(*args)
    except ValueError as err:
        raise BadParameter(str(err)) from None


def _int(doc: dict[str, Any], key: str, where: str = _H) -> int:
    return int(_typed(doc, key, int, where) or 0)


def _objects(doc: dict[str, Any], key: str, where: str = _H) -> list[dict[str, Any]]:
    items = _typed(doc, key, list, where) or []
    if not all(isinstance(i, dict) for i in items):
        raise BadParameter(f"json: cannot unmarshal {where}.{key}: want a list of objects")
    return list(items)


def _seccomp_content(value: str) -> str:
    """``seccomp=`` in a create body carries the profile itself (docker's CLI reads the file and sends it)."""
    try:
        json.loads(value)
    except ValueError as err:
        raise ValueError(f"decoding seccomp profile failed: {err}") from None
    return value


def stop_signal(body: dict[str, Any]) -> str | None:
    value = _typed(body, "StopSignal", str, "Config")
    if value:
        checked(signal_number, value)
    return value or None


def healthcheck(body: dict[str, Any]) -> dict[str, Any] | None:
    """Config.Healthcheck (durations in ns) → spec.healthcheck as `--health-*` writes it; ``Test`` empty
    keeps the image's test, ``["NONE"]`` is --no-healthcheck."""
    check = _typed(body, "Healthcheck", dict, "Config") or {}
    test = _strings(check, "Test", "Config.Healthcheck") or []
    if test[:1] == ["NONE"]:
        return {"test": ["NONE"]}
    if test and test[0] not in ("CMD", "CMD-SHELL"):
        raise BadParameter(f"Config.Healthcheck.Test {test[0]!r} is not one of NONE, CMD, CMD-SHELL")
    out: dict[str, Any] = {"test": test} if test else {}
    for key, field in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "startPeriod")):
        ns = _int(check, key, "Config.Healthcheck")
        if ns and ns < _MIN_HEALTH_NS:
            raise BadParameter(f"{key} in Healthcheck cannot be less than 1ms")
        if ns:
            out[field] = format_duration_ns(ns)
    retries = _int(check, "Retries", "Config.Healthcheck")
    if retries < 0:
        raise BadParameter("Retries in Healthcheck cannot be negative")
    if retries:
        out["retries"] = retries
    return out or None


def _mount_fields(entry: dict[str, Any]) -> MountFields:
    """One HostConfig.Mounts entry as the fields `--mount` would have given."""
    bind = _typed(entry, "BindOptions", dict, "Mount") or {}
    volume = _typed(entry, "VolumeOptions", dict, "Mount") or {}
    tmpfs = _typed(entry, "TmpfsOptions", dict, "Mount") or {}
    driver = _typed(volume, "DriverConfig", dict, "Mount.VolumeOptions") or {}
    size, mode = _int(tmpfs, "SizeBytes", "Mount.TmpfsOptions"), _int(tmpfs, "Mode", "Mount.TmpfsOptions")
    return MountFields(
        type=str(entry.get("Type") or ""), source=str(entry.get("Source") or ""),
        target=str(entry.get("Target") or ""), readonly=bool(entry.get("ReadOnly")),
        propagation=str(bind.get("Propagation") or ""), nonrecursive=bool(bind.get("NonRecursive")),
        nocopy=bool(volume.get("NoCopy")), volume_driver=str(driver.get("Name") or ""),
        volume_options=bool(volume.get("Labels") or driver.get("Options")),
        tmpfs_size=size or None, tmpfs_mode=mode or None)


def mounts(host: dict[str, Any]) -> tuple[list[Mount], list[dict[str, Any]]]:
    """HostConfig.Mounts and HostConfig.Tmpfs → (spec.volumes entries, spec.tmpfs entries)."""
    volumes: list[Mount] = []
    tmpfs: list[dict[str, Any]] = []  # Tmpfs' before Mounts', as `k3c run` orders --tmpfs and --mount
    for path, options in (_typed(host, "Tmpfs", dict, _H) or {}).items():
        tmpfs.append(checked(mountspec.tmpfs_entry, str(path), str(options or "")))
    for entry in _objects(host, "Mounts"):
        fields = _mount_fields(entry)
        if fields.type == "volume" and not fields.source:
            raise BadParameter("HostConfig.Mounts: a volume without a Source (anonymous) is not supported by k3c's "
                               "Docker API; name the volume")
        made = checked(mountspec.mount_entry, fields)
        if isinstance(made, Tmpfs):
            tmpfs.append(made.spec)
        else:
            volumes.append(made)
    return volumes, tmpfs


def devices(host: dict[str, Any]) -> list[dict[str, Any]]:
    return [checked(mountspec.device_entry, str(d.get("PathOnHost") or ""), str(d.get("PathInContainer") or ""),
                    str(d.get("CgroupPermissions") or "rwm"))
            for d in _objects(host, "Devices")]


def ulimits(host: dict[str, Any]) -> list[dict[str, Any]]:
    """HostConfig.Ulimits, the last of one name winning (as `--ulimit` given twice)."""
    out: dict[str, dict[str, Any]] = {}
    for u in _objects(host, "Ulimits"):
        name, soft, hard = _typed(u, "Name", str, "Ulimit"), _int(u, "Soft", "Ulimit"), _int(u, "Hard", "Ulimit")
        out[str(name)] = checked(runoptions.ulimit, str(name), soft, hard)
    return list(out.values())


def log_options(host: dict[str, Any]) -> dict[str, Any] | None:
    """HostConfig.LogConfig: json-file (or the default, '') with its max-size/max-file options."""
    config = _typed(host, "LogConfig", dict, _H) or {}
    kind = _typed(config, "Type", str, "HostConfig.LogConfig") or ""
    if kind not in ("", "json-file"):
        raise BadParameter(f"HostConfig.LogConfig.Type {kind} is not supported by k3c (json-file only)")
    options = _typed(config, "Config", dict, "HostConfig.LogConfig") or {}
    return checked(runoptions.log_options, {str(k): str(v) for k, v in options.items()})


def _memory_swap(host: dict[str, Any]) -> str | None:
    swap = _int(host, "MemorySwap")
    return "-1" if swap == -1 else str(swap) if swap > 0 else None


def run_options(body: dict[str, Any], host: dict[str, Any], memory: str | None) -> dict[str, Any]:
    """The spec fields of the run options in a create body (None: not asked for), except Mounts' volumes,
    which :func:`mounts` gives to the caller to merge with Binds. ``memory``: spec.memory (bytes), which the
    swap limit is checked against."""
    pid = _typed(host, "PidMode", str, _H) or ""
    ipc = _typed(host, "IpcMode", str, _H) or ""
    shm = _int(host, "ShmSize")
    if shm < 0:
        raise BadParameter("SHM size can not be less than 0")
    swap = _memory_swap(host)
    checked(runoptions.check_limits, memory, swap, str(shm) if shm else None, ipc or None)
    pids = _int(host, "PidsLimit")
    shares = _int(host, "CpuShares")
    if shares < 0:
        raise BadParameter("HostConfig.CpuShares cannot be negative")
    cpuset = _typed(host, "CpusetCpus", str, _H)
    return {
        "stopSignal": stop_signal(body), "healthcheck": healthcheck(body),
        "init": _typed(host, "Init", bool, _H) or None,
        "devices": devices(host) or None, "shmSize": str(shm) if shm else None,
        "extraHosts": [checked(runoptions.extra_host, h) for h in _strings(host, "ExtraHosts", _H) or []] or None,
        "dnsSearch": [checked(runoptions.dns_search, d) for d in _strings(host, "DnsSearch", _H) or []] or None,
        "dnsOptions": _strings(host, "DnsOptions", _H) or None,
        "ulimits": ulimits(host) or None, "pidsLimit": pids if pids > 0 else None,
        "memorySwap": swap, "cpuShares": shares or None,
        "cpusetCpus": checked(runoptions.cpuset, cpuset) if cpuset else None,
        **checked(runoptions.security_options, _strings(host, "SecurityOpt", _H) or [], _seccomp_content),
        "pidMode": checked(runoptions.pid_mode, pid) or None,
        "ipcMode": checked(runoptions.ipc_mode, ipc) if ipc else None,
        "groupAdd": _strings(host, "GroupAdd", _H) or None,
        "logOptions": log_options(host),
    }
