"""docker run's host options (hosts, DNS, ulimits, CPU sets, security, namespaces, logging, limits) as
LocalContainer spec values, checked as docker checks them.

Why a module of its own: two front doors take these options, `k3c run`'s flags and the Docker API's create
body; both must write the same spec fields and refuse the same values with the same words. Pure functions;
a value docker (or k3c) refuses raises ValueError with docker's message, which each front door reports its
own way (the CLI as docker's CLI prints it, the Docker API as a 400).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from k3c.units import ram_in_bytes

#: ``--add-host NAME:host-gateway``: the node's address on k3c's bridge (docker's name for it).
HOST_GATEWAY = "host-gateway"
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")
_DOMAIN = re.compile(r"^((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
                     r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*)\.?\s*$")
_CPUSET = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def extra_host(value: str) -> dict[str, str]:
    """NAME:IP (split at the first colon, so IPv6 works) or NAME:host-gateway → a spec.extraHosts entry."""
    name, sep, ip = value.partition(":")
    if not sep or not name:
        raise ValueError(f"bad format for add-host: {_quoted(value)}")
    if ip != HOST_GATEWAY:
        try:
            ipaddress.ip_address(ip.strip())
        except ValueError:
            raise ValueError(f"invalid IP address in add-host: {_quoted(ip)}") from None
        ip = ip.strip()
    return {"name": name, "ip": ip}


def dns_search(value: str) -> str:
    """A search domain (docker's ValidateDNSSearch); "." stands for none."""
    value = value.strip(" ")
    if value == ".":
        return value
    m = _DOMAIN.match(value)
    if not re.search(r"[a-zA-Z]", value) or not m or len(m.group(1)) >= 255:
        raise ValueError(f"{value} is not a valid domain")
    return m.group(1)


def ulimit(name: str, soft: int, hard: int) -> dict[str, Any]:
    """A spec.ulimits entry; -1 is unlimited."""
    if name not in ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    if soft > hard and hard != -1:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"name": name, "soft": soft, "hard": hard}


def cpuset(value: str) -> str:
    if not _CPUSET.match(value):
        raise ValueError(f"Invalid value {value} for cpuset cpus")
    return value


def security_options(values: list[str], seccomp_profile: Callable[[str], str]) -> dict[str, Any]:
    """no-new-privileges[:true|false], seccomp=unconfined|PROFILE, apparmor=NAME → spec fields;
    ``seccomp_profile`` turns what follows ``seccomp=`` into the profile's JSON (the CLI reads a file there,
    the Docker API receives the content)."""
    out: dict[str, Any] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            key, sep, val = value.partition(":")
        if key == "no-new-privileges":
            if val not in ("", "true", "false"):
                raise ValueError(f"invalid --security-opt 2: {value!r}")
            out["noNewPrivileges"] = val != "false"
        elif key == "seccomp" and val:
            out["seccompProfile"] = val if val == "unconfined" else seccomp_profile(val)
        elif key == "apparmor" and val:
            out["apparmorProfile"] = val
        elif key in ("label", "systempaths", "seccomp", "apparmor") or not sep:
            raise ValueError(f"--security-opt {value}: not supported by k3c")
        else:
            raise ValueError(f"invalid --security-opt 1: {value!r}")
    return out


def pid_mode(value: str) -> str:
    if value in ("", "host"):
        return value
    raise ValueError(f"--pid {value}: not supported by k3c (use host, or none for the container's own)")


def ipc_mode(value: str) -> str:
    if value in ("host", "private", "shareable"):
        return value
    raise ValueError(f"--ipc {value}: not supported by k3c (use host, private or shareable)")


def log_options(pairs: Mapping[str, str]) -> dict[str, Any] | None:
    """json-file's rotation options max-size and max-file → spec.logOptions (others refused)."""
    out: dict[str, Any] = {}
    for key, val in pairs.items():
        if key == "max-size":
            try:
                if ram_in_bytes(val) <= 0:
                    raise ValueError(val)
            except ValueError:
                raise ValueError(f"invalid size: '{val}'") from None
            out["maxSize"] = val
        elif key == "max-file":
            if not val.isdigit() or int(val) < 1:
                raise ValueError("max-file cannot be less than 1")
            out["maxFile"] = int(val)
        else:
            raise ValueError(f"unknown log opt '{key}' for json-file log driver (k3c supports max-size and "
                             "max-file)")
    if "maxFile" in out and "maxSize" not in out:
        raise ValueError("max-file needs max-size (k3c rotates by size)")
    return out or None


def check_limits(memory: str | None, memory_swap: str | None, shm_size: str | None, ipc: str | None) -> None:
    """What docker's daemon refuses of the memory, swap and shm settings together (bytes as text, swap -1)."""
    if shm_size and ipc == "host":
        raise ValueError("--shm-size cannot be used with --ipc host (the node's /dev/shm is used)")
    if memory_swap not in (None, "-1") and memory is None:
        raise ValueError("You should always set the Memory limit when using Memoryswap limit, see usage.")
    if memory_swap not in (None, "-1") and memory is not None and int(memory_swap) < int(memory):
        raise ValueError("Minimum memoryswap limit should be larger than memory limit, see usage.")
