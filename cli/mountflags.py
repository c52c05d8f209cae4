"""`-v`, `--mount`, `--tmpfs` and `--device`: docker's mount syntaxes → LocalContainer spec entries.

Why a module of its own: docker has three syntaxes for mounts (the `-v` triple, the `--mount` CSV of keys,
`--tmpfs PATH[:OPTIONS]`) plus `--device`, each with its own error wording; they all end as entries of
``spec.volumes``, ``spec.tmpfs`` and ``spec.devices``. Pure functions: wrong values raise
argparse.ArgumentTypeError worded as docker's flag parser does (the parser prints it, exit 125), or a
CLIError for what docker checks after parsing (its daemon, for `--mount` configs).
"""

from __future__ import annotations

import argparse
import csv
import os
import posixpath
import secrets
from dataclasses import dataclass
from typing import Any

from k3c import dockerid
from k3c.cli.errors import CLIError, daemon_error
from k3c.cli.goflags import parse_bool

#: `-v` modes docker accepts; z/Z (SELinux relabelling: no SELinux here), nocopy (k3c volumes start empty)
#: and the consistency modes (ignored by docker on Linux too) ask for nothing k3c would have to do.
MOUNT_MODES = {"ro", "rw", "z", "Z", "shared", "slave", "private", "rshared", "rslave", "rprivate", "nocopy",
               "consistent", "cached", "delegated"}
#: Propagation modes CRI can express (containerd's PROPAGATION_PRIVATE, HOST_TO_CONTAINER, BIDIRECTIONAL).
PROPAGATIONS = ("rprivate", "rslave", "rshared")
_ALL_PROPAGATIONS = {"private", "rprivate", "shared", "rshared", "slave", "rslave"}


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


@dataclass
class Mount:
    """A `spec.volumes` entry; ``anonymous`` when `k3c run` made up its volume name."""

    spec: dict[str, Any]
    anonymous: bool = False
    docker_name: str = ""  # a named volume's name as given (spec.volume is the object name it maps to)


@dataclass
class Tmpfs:
    """A `spec.tmpfs` entry (from `--mount type=tmpfs`)."""

    spec: dict[str, Any]


# ---- -v/--volume -------------------------------------------------------------------------------------
def parse_volume(value: str) -> Mount:
    """-v NAME:/path[:ro], /host:/path[:ro|rw], ./rel:/path, or /path alone (an anonymous volume)."""
    parts = value.split(":")
    if len(parts) > 3 or not all(parts[:2]):
        raise _bad(f"invalid volume specification: '{value}'")
    if len(parts) == 1:
        return _anonymous(value)
    src, dst, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    if not dst.startswith("/"):
        raise _bad(f"invalid volume specification: '{value}': invalid mount path: '{dst}' mount path must be "
                   "absolute")
    modes = [m for m in mode.split(",") if m]
    if any(m not in MOUNT_MODES for m in modes) or ("ro" in modes and "rw" in modes):
        raise _bad(f"invalid mode: {mode}")
    spec: dict[str, Any] = {"mountPath": dst}
    if src.startswith(("/", ".", "~")):
        spec["hostPath"] = os.path.abspath(os.path.expanduser(src))
    elif dockerid.valid_docker_name(src):
        spec["volume"] = dockerid.object_name(src)
    else:
        raise _bad(_volume_name_error(src))
    if "ro" in modes:
        spec["readOnly"] = True
    propagation = [m for m in modes if m in _ALL_PROPAGATIONS]
    if propagation:
        if "hostPath" not in spec:
            raise _bad(f"invalid mode: {mode}: propagation applies to bind mounts only")
        spec["propagation"] = _propagation(propagation[-1], f"invalid mode: {mode}")
    return Mount(spec, docker_name=src if "volume" in spec else "")


def _volume_name_error(name: str) -> str:
    """docker's words for a volume name it cannot create (its local driver's check)."""
    return (f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')


def _propagation(mode: str, context: str) -> str:
    if mode not in PROPAGATIONS:
        raise _bad(f"{context}: propagation mode {mode} is not supported by k3c (use {', '.join(PROPAGATIONS)})")
    return mode


def _anonymous(path: str) -> Mount:
    if not path.startswith("/"):
        raise _bad(f"invalid volume specification: '{path}': invalid mount path: '{path}' mount path must be "
                   "absolute")
    return Mount({"volume": secrets.token_hex(32), "mountPath": path}, anonymous=True)


# ---- --mount -----------------------------------------------------------------------------------------
@dataclass
class MountFields:
    """What one `--mount` value said, before it is checked against its type."""

    type: str = "volume"
    source: str = ""
    target: str = ""
    readonly: bool = False
    propagation: str = ""
    nonrecursive: bool = False
    nocopy: bool = False
    volume_driver: str = ""
    volume_options: bool = False  # volume-opt or volume-label given (k3c's volumes take none)
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
    option_kinds: frozenset[str] = frozenset()  # "bind", "volume", "tmpfs": which *-options were given


def _bool_field(key: str, value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError:
        raise _bad(f"invalid value for {key}: {value}") from None


def _read_mount_fields(value: str) -> MountFields:
    """docker's MountOpt.Set: CSV fields of key=value (bare `readonly`/`ro`/`volume-nocopy`), keys any case."""
    from k3c.units import ram_in_bytes

    m = MountFields()
    kinds: set[str] = set()
    for field in next(csv.reader([value]), []):
        key, sep, val = field.partition("=")
        key = key.lower()
        if not sep and key in ("readonly", "ro", "volume-nocopy"):
            val = "true"
        elif not sep:
            raise _bad(f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            m.type = val.lower()
        elif key in ("source", "src"):
            m.source = val
        elif key in ("target", "dst", "destination"):
            m.target = val
        elif key in ("readonly", "ro"):
            m.readonly = _bool_field(key, val)
        elif key == "consistency":
            pass  # docker on Linux ignores it too
        elif key.startswith("bind-") and key in ("bind-propagation", "bind-nonrecursive"):
            kinds.add("bind")
            if key == "bind-propagation":
                m.propagation = val.lower()
            else:
                m.nonrecursive = _bool_field(key, val)
        elif key in ("volume-driver", "volume-nocopy", "volume-label", "volume-opt"):
            kinds.add("volume")
            if key == "volume-nocopy":
                m.nocopy = _bool_field(key, val)
            elif key == "volume-driver":
                m.volume_driver = val
            else:
                m.volume_options = True
        elif key in ("tmpfs-size", "tmpfs-mode"):
            kinds.add("tmpfs")
            try:
                if key == "tmpfs-size":
                    m.tmpfs_size = ram_in_bytes(val)
                else:
                    m.tmpfs_mode = int(val, 8)
                    if not 0 <= m.tmpfs_mode < 2 ** 32:
                        raise ValueError(val)
            except ValueError:
                raise _bad(f"invalid value for {key}: {val}") from None
        else:
            raise _bad(f"unexpected key '{key}' in '{field}'")
    m.option_kinds = frozenset(kinds)
    return m


def parse_mount(value: str) -> MountFields:
    """--mount type=bind|volume|tmpfs,source=…,target=…,readonly,bind-propagation=…,tmpfs-size=…,…: what
    docker's flag parser checks (:func:`mount_entry` checks the rest, as docker's daemon does)."""
    m = _read_mount_fields(value)
    if not m.type:
        raise _bad("type is required")
    if not m.target:
        raise _bad("target is required")
    for kind in ("volume", "bind", "tmpfs"):
        if kind in m.option_kinds and m.type != kind:
            raise _bad(f"cannot mix '{kind}-*' options with mount type '{m.type}'")
    return m


def _config_error(m: MountFields, message: str) -> CLIError:
    return daemon_error(f'invalid mount config for type "{m.type}": {message}', 125)


def _absolute(m: MountFields, path: str) -> None:
    if not path.startswith("/"):
        raise _config_error(m, f"invalid mount path: '{path}' mount path must be absolute")


def mount_entry(m: MountFields) -> Mount | Tmpfs:
    """A `--mount` as a spec entry, after what docker's daemon checks of a mount config (CLIError)."""
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
    if m.propagation and m.propagation not in _ALL_PROPAGATIONS:
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
        mount = _anonymous(m.target)
    elif dockerid.valid_docker_name(m.source):
        mount = Mount({"volume": dockerid.object_name(m.source), "mountPath": m.target}, docker_name=m.source)
    else:
        raise daemon_error(_volume_name_error(m.source), 125)  # docker's daemon: its volume create fails
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


# ---- --tmpfs -----------------------------------------------------------------------------------------
def parse_tmpfs(value: str) -> dict[str, Any]:
    """--tmpfs PATH[:OPTIONS] (OPTIONS as mount(8) takes them: size=64m,mode=1777,exec)."""
    path, sep, options = value.partition(":")
    if not path.startswith("/"):
        raise daemon_error(f"invalid mount path: '{path}' mount path must be absolute", 125)
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
            raise daemon_error(f"Duplicate mount point: {path}", 125)
        seen.add(path)


# ---- --device ----------------------------------------------------------------------------------------
def _device_mode(mode: str) -> bool:
    """r, w and m, each at most once (docker's validDeviceMode)."""
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def parse_device(value: str) -> dict[str, Any]:
    """--device HOST[:CONTAINER][:PERMISSIONS], checked as docker's validateLinuxPath checks it."""
    if value.count(":") > 2 or not value.split(":", 1)[0]:
        raise CLIError(f"bad format for path: {value}", 125)
    parts = value.split(":")
    host, container, perms = parts[0], "", "rwm"
    if len(parts) == 3:
        container, perms = parts[1], parts[2]
        if not _device_mode(perms):
            raise CLIError(f"bad mode specified: {perms}", 125)
    elif len(parts) == 2:
        if _device_mode(parts[1]):
            perms = parts[1]
        else:
            container = parts[1]
    checked = container or host
    if not checked.startswith("/"):
        raise CLIError(f"{checked} is not an absolute path", 125)
    spec: dict[str, Any] = {"hostPath": posixpath.normpath(host)}
    if container and posixpath.normpath(container) != spec["hostPath"]:
        spec["containerPath"] = posixpath.normpath(container)
    if perms != "rwm":
        spec["permissions"] = perms
    return spec
