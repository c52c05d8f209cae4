"""Linux bridges of user networks: made with their gateway address when the network is set up (as docker
does at `network create`, so the address is there before the first container), removed with it."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path


class BridgeError(RuntimeError):
    """An ``ip`` command failed; the message says which and why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BridgeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def ensure(name: str, gateway: str, prefix_length: int, mtu: int | None = None) -> None:
    """Bridge ``name`` up with ``gateway/prefix_length`` on it; what is already so is left alone."""
    if not exists(name):
        args = ["link", "add", "name", name, "type", "bridge"]
        r = _ip(*args, *(["mtu", str(mtu)] if mtu else []), check=False)
        if r.returncode != 0 and not exists(name):
            raise BridgeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    wanted = ipaddress.IPv4Interface(f"{gateway}/{prefix_length}")
    if wanted not in addresses(name):
        r = _ip("addr", "add", str(wanted), "dev", name, check=False)
        if r.returncode != 0 and wanted not in addresses(name):
            raise BridgeError(f"ip addr add {wanted} dev {name}: {r.stderr.strip()}")
    _ip("link", "set", name, "up")


def addresses(name: str) -> list[ipaddress.IPv4Interface]:
    r = _ip("-4", "-j", "addr", "show", "dev", name, check=False)
    try:
        items = json.loads(r.stdout or "[]")
    except ValueError:
        return []
    return [ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}") for i in items for a in i.get("addr_info", [])]


def remove(name: str) -> bool:
    """Delete bridge ``name``; whether there was one."""
    if not exists(name):
        return False
    r = _ip("link", "del", name, check=False)
    if r.returncode != 0 and exists(name):
        raise BridgeError(f"ip link del {name}: {r.stderr.strip()}")
    return True
