"""Mounts and devices as a LocalContainer spec takes them, checked as docker's daemon checks them.

Why a module of its own: two front doors ask for mounts, `k3c run`'s flags (`--mount`, `--device`) and the
Docker API's create body (HostConfig.Mounts, Devices); both must end as the same spec entries and refuse the
same things with the same words. Pure functions; a value docker's daemon (or k3c) refuses raises ValueError
with the daemon's message, which each front door reports its own way.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any, NamedTuple

from k3c import dockerid

#: Propagation modes CRI can express (containerd's PROPAGATION_PRIVATE, HOST_TO_CONTAINER, BIDIRECTIONAL).
PROPAGATIONS = ("rprivate", "rslave", "rshared")
ALL_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})


# (NamedTuples and a plain class, not dataclasses: `k3c run` imports this module, and ``dataclasses`` brings
# ``inspect``, ~10 ms of its start.)
class Mount(NamedTuple):
    """A `spec.volumes` entry; ``anonymous`` when k3c made up its volume name."""

    spec: dict[str, Any]
    anonymous: bool = False
    docker_name: str = ""  # a named volume's name as given (spec.volume is the object name it maps to)


class Tmpfs(NamedTuple):
    """A `spec.tmpfs` entry (from a mount of type tmpfs)."""

    spec: dict[str, Any]


class MountFields:
    """One mount as docker's API describes it (``--mount`` parsed, or an entry of HostConfig.Mounts)."""

    def __init__(self, *, type: str = "volume", source: str = "", target: str = "", readonly: bool = False,
                 propagation: str = "", nonrecursive: bool = False, nocopy: bool = False, volume_driver: str = "",
                 volume_options: bool = False, tmpfs_size: int | None = None, tmpfs_mode: int | None = None,
                 option_kinds: frozenset[str] = frozenset()) -> None:
        self.type = type
        self.source = source
        self.target = target
        self.readonly = readonly
        self.propagation = propagation
        self.nonrecursive = nonrecursive
        self.nocopy = nocopy
        self.volume_driver = volume_driver
        self.volume_options = volume_options  # volume-opt or volume-label given (k3c's volumes take none)
        self.tmpfs_size = tmpfs_size
        self.tmpfs_mode = tmpfs_mode
        self.option_kinds = option_kinds  # "bind", "volume", "tmpfs": which *-options were given


def volume_name_error(name: str) -> str:
    """docker's words for a volume name it cannot create (its local driver's check)."""
    return (f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')


def anonymous(path: str) -> Mount:
    """A new anonymous volume on ``path`` (an absolute path: the caller checked it)."""
    return Mount({"volume": os.urandom(32).hex(), "mountPath": path}, anonymous=True)  # (secrets.token_hex's)


def _config_error(m: MountFields, message: str) -> ValueError:
    return ValueError(f'invalid mount config for type "{m.type}": {message}')


def _absolute(m: MountFields, path: str) -> None:
    if not path.startswith("/"):
        raise _config_error(m, f"invalid mount path: '{path}' mount path must be absolute")


def mount_entry(m: MountFields) -> Mount | Tmpfs:
    """A mount as a spec entry, after what docker's daemon checks of a mount config (ValueError)."""
    if m.type not in ("bind", "volume", "tmpfs"):
        raise _config_error(m, "mount type unknown")
    _absolute(m, m.target)
    if m.type == "tmpfs":
        return _tmpfs_mount(m)
    if m.type == "volume":
        return _volume_mount(m)
    if not m.source:
        raise _config_error(m, "field Source must not be empty")
    _absolute(m, m.source)
    if not os.path.exists(m.source):
        raise _config_error(m, f"bind source path does not exist: {m.source}")
    if m.propagation and m.propagation not in ALL_PROPAGATIONS:
        raise _config_error(m, f"invalid propagation mode: {m.propagation}")
    if m.propagation and m.propagation not in PROPAGATIONS:
        raise _config_error(m, f"propagation mode {m.propagation} is not supported by k3c (use "
                               f"{', '.join(PROPAGATIONS)})")
    if m.nonrecursive:
        raise _config_error(m, "bind-nonrecursive is not supported by k3c (CRI mounts are recursive)")
    spec: dict[str, Any] = {"hostPath": posixpath.normpath(m.source), "mountPath": m.target}
    if m.readonly:
        spec["readOnly"] = True
    if m.propagation:
        spec["propagation"] = m.propagation
    return Mount(spec)


def _volume_mount(m: MountFields) -> Mount:
    if m.volume_driver not in ("", "local"):
        raise _config_error(m, f"volume driver {m.volume_driver} is not supported by k3c (only local)")
    if m.volume_options:
        raise _config_error(m, "volume-opt and volume-label are not supported by k3c (its volumes are "
                               "directories on the node)")
    if not m.source:
        mount = anonymous(m.target)
    elif dockerid.valid_docker_name(m.source):
        mount = Mount({"volume": dockerid.object_name(m.source), "mountPath": m.target}, docker_name=m.source)
    else:
        raise ValueError(volume_name_error(m.source))  # docker's daemon: its volume create fails
    if m.readonly:
        mount.spec["readOnly"] = True
    return mount


def _tmpfs_mount(m: MountFields) -> Tmpfs:
    if m.source:
        raise _config_error(m, "field Source must not be specified")
    options = []
    if m.readonly:
        options.append("ro")
    if m.tmpfs_size:
        options.append(f"size={m.tmpfs_size}")
    if m.tmpfs_mode:
        options.append(f"mode={m.tmpfs_mode:o}")
    spec: dict[str, Any] = {"mountPath": m.target}
    if options:
        spec["options"] = ",".join(options)
    return Tmpfs(spec)


def tmpfs_entry(path: str, options: str) -> dict[str, Any]:
    """A `spec.tmpfs` entry for PATH with mount(8) OPTIONS (``size=64m,mode=1777``; '' for none)."""
    if not path.startswith("/"):
        raise ValueError(f"invalid mount path: '{path}' mount path must be absolute")
    spec: dict[str, Any] = {"mountPath": path}
    if options:
        spec["options"] = options
    return spec


def check_mount_points(volumes: list[dict[str, Any]], tmpfs: list[dict[str, Any]]) -> None:
    """Two mounts on one path: docker's daemon refuses that."""
    seen: set[str] = set()
    for entry in [*volumes, *tmpfs]:
        path = posixpath.normpath(entry["mountPath"])
        if path in seen:
            raise ValueError(f"Duplicate mount point: {path}")
        seen.add(path)


def device_mode(mode: str) -> bool:
    """r, w and m, each at most once (docker's validDeviceMode)."""
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def device_entry(host: str, container: str, permissions: str) -> dict[str, Any]:
    """A `spec.devices` entry: the container path and permissions only where they differ from the defaults
    (the host's path, ``rwm``); ValueError for a relative path or a bad mode."""
    if not device_mode(permissions):
        raise ValueError(f"bad mode specified: {permissions}")
    checked = container or host
    if not checked.startswith("/"):
        raise ValueError(f"{checked} is not an absolute path")
    spec: dict[str, Any] = {"hostPath": posixpath.normpath(host)}
    if container and posixpath.normpath(container) != spec["hostPath"]:
        spec["containerPath"] = posixpath.normpath(container)
    if permissions != "rwm":
        spec["permissions"] = permissions
    return spec
