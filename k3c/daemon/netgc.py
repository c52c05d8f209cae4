"""Network state of sandboxes that no longer exist: found and removed when k3c's containerd (re)starts.

A sandbox whose creation is cut short — containerd killed during RunPodSandbox, or the whole daemon
killed with -9 — can leave its CNI state behind although containerd never recorded the sandbox: a
host-local IP lease (in any of the node's networks), a bind-mounted network namespace, iptables rules,
libcni's cached result, the ``k3c-cni`` dispatcher's record of its networks. Nothing
would ever release them, and the subnet slowly fills up. :func:`sweep` runs CNI DEL (the same plugins,
config and cached result libcni would use) for every container id that holds network state but is not a
sandbox containerd knows, then drops leftover lease files and unmounts orphaned network namespaces.

Only state older than ``older_than`` (the moment containerd came up) is touched, so a sandbox being
created right now is never mistaken for a leftover. The daemon's periodic sweep (:mod:`k3c.daemon.sweeper`)
uses :func:`find` and :func:`release` with a grace period instead, for state that became an orphan after
containerd's start.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.daemon.containerd import CNI_CACHE_DIR, ContainerdConfig, render_dispatcher

log = logging.getLogger(__name__)


def _older(path: Path, than: float) -> bool:
    try:
        return path.lstat().st_mtime < than
    except OSError:
        return False


def _lease_owners(cfg: ContainerdConfig, older_than: float) -> dict[str, list[Path]]:
    """Sandbox id → its lease files in every network of the node (host-local writes the id on the first
    line)."""
    owners: dict[str, list[Path]] = {}
    ipam = cfg.cni_ipam_dir
    for d in (d for d in ipam.iterdir() if d.is_dir()) if ipam.is_dir() else []:
        for f in d.iterdir():
            if f.name[:1].isdigit() and not f.name.startswith("last_") and _older(f, older_than):
                with contextlib.suppress(OSError):
                    owners.setdefault(f.read_text().split("\n", 1)[0].strip(), []).append(f)
    return owners


def _records(cfg: ContainerdConfig, older_than: float) -> dict[str, Path]:
    """Sandbox id → the ``k3c-cni`` dispatcher's record of its networks."""
    d = cfg.network_dirs.records
    return {f.stem: f for f in d.glob("*.json") if _older(f, older_than)} if d.is_dir() else {}


def _cached_ids(cfg: ContainerdConfig, older_than: float) -> dict[str, Path]:
    prefix, suffix = f"{cfg.network_name}-", "-eth0"
    found: dict[str, Path] = {}
    if CNI_CACHE_DIR.is_dir():
        for f in CNI_CACHE_DIR.glob(f"{prefix}*{suffix}"):
            if _older(f, older_than):
                found[f.name[len(prefix):-len(suffix)]] = f
    return found


@dataclass
class Orphans:
    """Network state no live sandbox accounts for: per vanished sandbox id its lease files and libcni's
    cached result, and network namespaces no sandbox uses."""

    leases: dict[str, list[Path]] = field(default_factory=dict)
    cached: dict[str, Path] = field(default_factory=dict)
    netns: list[Path] = field(default_factory=list)
    records: dict[str, Path] = field(default_factory=dict)  #: the dispatcher's, of user networks

    @property
    def sandboxes(self) -> set[str]:
        return set(self.leases) | set(self.cached) | set(self.records)

    def keys(self) -> set[str]:
        return {f"sandbox {sid}" for sid in self.sandboxes} | {f"netns {p}" for p in self.netns}

    def only(self, keys: set[str]) -> Orphans:
        """The part of these named by ``keys`` (see :meth:`keys`)."""
        return Orphans({s: f for s, f in self.leases.items() if f"sandbox {s}" in keys},
                       {s: f for s, f in self.cached.items() if f"sandbox {s}" in keys},
                       [p for p in self.netns if f"netns {p}" in keys],
                       {s: f for s, f in self.records.items() if f"sandbox {s}" in keys})


def find(cfg: ContainerdConfig, live_sandboxes: set[str], live_netns: set[str], older_than: float) -> Orphans:
    """What of the network state older than ``older_than`` no live sandbox (or its netns) accounts for."""
    leases = _lease_owners(cfg, older_than)
    cached = _cached_ids(cfg, older_than)
    records = _records(cfg, older_than)
    netns = [ns for ns in (cfg.netns_dir.iterdir() if cfg.netns_dir.is_dir() else [])
             if str(ns) not in live_netns and _older(ns, older_than)]
    return Orphans({s: f for s, f in leases.items() if s not in live_sandboxes},
                   {s: f for s, f in cached.items() if s not in live_sandboxes}, netns,
                   {s: f for s, f in records.items() if s not in live_sandboxes})


def release(cfg: ContainerdConfig, orphans: Orphans) -> list[str]:
    """CNI DEL and lease files of each vanished sandbox, unmount and remove each netns; returns what was done."""
    done: list[str] = []
    for sid in orphans.sandboxes:
        cni_del(cfg, sid, orphans.cached.get(sid))
        for f in [*orphans.leases.get(sid, []), *([orphans.records[sid]] if sid in orphans.records else [])]:
            with contextlib.suppress(OSError):
                f.unlink()
        done.append(f"released network of vanished sandbox {sid[:12]}")
    for ns in orphans.netns:
        subprocess.run(["umount", str(ns)], capture_output=True)
        with contextlib.suppress(OSError):
            ns.unlink()
        done.append(f"removed orphaned netns {ns.name}")
    for line in done:
        log.info("%s", line)
    return done


def sweep(cfg: ContainerdConfig, live_sandboxes: set[str], live_netns: set[str], older_than: float) -> list[str]:
    """Release the network state of every non-live sandbox; returns what was done (for the log)."""
    return release(cfg, find(cfg, live_sandboxes, live_netns, older_than))


def cni_del(cfg: ContainerdConfig, sandbox_id: str, cache_file: Path | None) -> None:
    """CNI DEL of k3c's conflist for one container id, plugins in reverse order, as libcni does it."""
    cache: dict[str, Any] = {}
    if cache_file is not None:
        with contextlib.suppress(OSError, ValueError):
            cache = json.loads(cache_file.read_text())
    try:
        conflist = json.loads(base64.b64decode(cache["config"]))
    except (KeyError, ValueError):
        conflist = render_dispatcher(cfg)
    args = ";".join(f"{k}={v}" for k, v in cache.get("cniArgs") or [["IgnoreUnknown", "1"]])
    env = {**os.environ, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": sandbox_id, "CNI_NETNS": "",
           "CNI_IFNAME": cache.get("ifName", "eth0"), "CNI_PATH": str(cfg.network_dirs.plugins), "CNI_ARGS": args}
    runtime = dict(cache.get("capabilityArgs") or {})
    for plugin in reversed(conflist.get("plugins", [])):
        conf = {**plugin, "cniVersion": conflist.get("cniVersion", "1.0.0"), "name": conflist.get("name")}
        if cache.get("result"):
            conf["prevResult"] = cache["result"]
        wanted = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
        if wanted & set(runtime):
            conf["runtimeConfig"] = {k: runtime[k] for k in wanted & set(runtime)}
        binary = cfg.network_dirs.plugins / plugin["type"]
        r = subprocess.run([str(binary)], input=json.dumps(conf).encode(), env=env, capture_output=True)
        if r.returncode != 0:
            log.debug("CNI DEL %s for %s: %s", plugin["type"], sandbox_id[:12], r.stdout.decode(errors="replace"))
    for f in (cache_file, CNI_CACHE_DIR / f"cni-loopback-{sandbox_id}-lo"):
        if f is not None:
            with contextlib.suppress(OSError):
                f.unlink()
