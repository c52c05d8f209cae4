"""`-v`, `--mount`, `--tmpfs` and `--device`: docker's mount syntaxes → LocalContainer spec entries.

Why a module of its own: docker has three syntaxes for mounts (the `-v` triple, the `--mount` CSV of keys,
`--tmpfs PATH[:OPTIONS]`) plus `--device`, each with its own error wording; they all end as entries of
``spec.volumes``, ``spec.tmpfs`` and ``spec.devices``. Pure functions: wrong values raise
argparse.ArgumentTypeError worded as docker's flag parser does (the parser prints it, exit 125), or a
CLIError for what docker checks after parsing (its daemon, for `--mount` configs: those checks are
:mod:`k3c.mountspec`'s, shared with the Docker API).
"""

from __future__ import annotations

import argparse
import csv
import os
from typing import Any

from k3c import dockerid, mountspec
from k3c.cli.errors import CLIError, daemon_error
from k3c.cli.goflags import parse_bool
from k3c.mountspec import PROPAGATIONS, Mount, MountFields, Tmpfs, anonymous, volume_name_error

#: `-v` modes docker accepts; z/Z (SELinux relabelling: no SELinux here), nocopy (k3c volumes start empty)
#: and the consistency modes (ignored by docker on Linux too) ask for nothing k3c would have to do.
MOUNT_MODES = {"ro", "rw", "z", "Z", "shared", "slave", "private", "rshared", "rslave", "rprivate", "nocopy",
               "consistent", "cached", "delegated"}



def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


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
        raise _bad(volume_name_error(src))
    if "ro" in modes:
        spec["readOnly"] = True
    propagation = [m for m in modes if m in mountspec.ALL_PROPAGATIONS]
    if propagation:
        if "hostPath" not in spec:
            raise _bad(f"invalid mode: {mode}: propagation applies to bind mounts only")
        spec["propagation"] = _propagation(propagation[-1], f"invalid mode: {mode}")
    return Mount(spec, docker_name=src if "volume" in spec else "")


def _propagation(mode: str, context: str) -> str:
    if mode not in PROPAGATIONS:
        raise _bad(f"{context}: propagation mode {mode} is not supported by k3c (use {', '.join(PROPAGATIONS)})")
    return mode


def _anonymous(path: str) -> Mount:
    if not path.startswith("/"):
        raise _bad(f"invalid volume specification: '{path}': invalid mount path: '{path}' mount path must be "
                   "absolute")
    return anonymous(path)


# ---- --mount -----------------------------------------------------------------------------------------
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


def mount_entry(m: MountFields) -> Mount | Tmpfs:
    """A `--mount` as a spec entry, after what docker's daemon checks of a mount config (CLIError)."""
    try:
        return mountspec.mount_entry(m)
    except ValueError as err:
        raise daemon_error(str(err), 125) from None


# ---- --tmpfs -----------------------------------------------------------------------------------------
def parse_tmpfs(value: str) -> dict[str, Any]:
    """--tmpfs PATH[:OPTIONS] (OPTIONS as mount(8) takes them: size=64m,mode=1777,exec)."""
    path, _, options = value.partition(":")
    try:
        return mountspec.tmpfs_entry(path, options)
    except ValueError as err:
        raise daemon_error(str(err), 125) from None


def check_mount_points(volumes: list[dict[str, Any]], tmpfs: list[dict[str, Any]]) -> None:
    """Two mounts on one path: docker's daemon refuses that."""
    try:
        mountspec.check_mount_points(volumes, tmpfs)
    except ValueError as err:
        raise daemon_error(str(err), 125) from None


# ---- --device ----------------------------------------------------------------------------------------
def parse_device(value: str) -> dict[str, Any]:
    """--device HOST[:CONTAINER][:PERMISSIONS], checked as docker's validateLinuxPath checks it."""
    if value.count(":") > 2 or not value.split(":", 1)[0]:
        raise CLIError(f"bad format for path: {value}", 125)
    parts = value.split(":")
    host, container, perms = parts[0], "", "rwm"
    if len(parts) == 3:
        container, perms = parts[1], parts[2]
    elif len(parts) == 2:
        if mountspec.device_mode(parts[1]):
            perms = parts[1]
        else:
            container = parts[1]
    try:
        return mountspec.device_entry(host, container, perms)
    except ValueError as err:
        raise CLIError(str(err), 125) from None
