"""`k3c top` and `k3c stats`: a container's processes and its resource usage, as docker shows them.

Both read the node through LocalContainer subresources (`top`, `stats`; see k3c.streams.nodeops), never
containerd directly. `stats` computes docker's percentages from two samples a second apart the way docker's
CLI does (CPU time against the host's, memory without the inactive page cache), with its column names,
units and `--format` fields. `--no-stream` prints one table; otherwise the table is redrawn every half
second from one stats stream per container.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from k3c.api import LOCAL_CONTAINERS
from k3c.cli.common import (
    Containers,
    Session,
    Subcommands,
    add_command,
    command,
    container_id,
    is_running,
    session,
    short_id,
)
from k3c.units import bytes_size, human_size

STATS_TABLE = "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}
#: docker's redraw interval of the live table.
REDRAW = 0.5


def register(sub: Subcommands) -> None:
    p = add_command(sub, "top", "Display the running processes of a container",
                    usage="k3c top CONTAINER [ps OPTIONS]")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="ps OPTIONS")
    p.set_defaults(func=top_cmd)
    p = add_command(sub, "stats", "Display a live stream of container(s) resource usage statistics",
                    usage="k3c stats [OPTIONS] [CONTAINER...]")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("--format", metavar="string", help="Pretty-print stats using a Go template")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.set_defaults(func=stats_cmd)


# ---- top --------------------------------------------------------------------------------------------
@command()
def top_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.template import tabwrite

    s = session(args)
    obj = Containers(s).get(args.container)
    query = {"ps_args": " ".join(args.ps_args)} if args.ps_args else None
    listing = s.client.request("GET", s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], "top"), query=query)
    rows = [list(listing.get("Titles") or []), *(list(p) for p in listing.get("Processes") or [])]
    print(tabwrite(rows, minwidth=20, padding=3), end="")
    return 0


# ---- stats ------------------------------------------------------------------------------------------
@dataclass
class StatsRow:
    """One line of `docker stats`: its template fields."""

    Container: str
    Name: str
    ID: str
    CPUPerc: str
    MemUsage: str
    MemPerc: str
    NetIO: str
    BlockIO: str
    PIDs: str


def stats_row(ref: str, doc: dict[str, Any], trunc: bool) -> StatsRow:
    """docker's CLI arithmetic over one stats document (cli/command/container/stats_helpers.go)."""
    cpu, pre = doc.get("cpu_stats") or {}, doc.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    cpu_percent = cpu_delta / system_delta * online * 100 if system_delta > 0 and cpu_delta > 0 else 0.0
    mem = doc.get("memory_stats") or {}
    used, limit = memory_used(mem), mem.get("limit", 0)
    mem_percent = used / limit * 100 if limit else 0.0
    rx = sum(n.get("rx_bytes", 0) for n in (doc.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (doc.get("networks") or {}).values())
    read = write = 0
    for entry in (doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        read += entry.get("value", 0) if op == "read" else 0
        write += entry.get("value", 0) if op == "write" else 0
    cid = str(doc.get("id", ""))
    return StatsRow(
        Container=ref, Name=str(doc.get("name", "")).removeprefix("/"), ID=cid[:12] if trunc else cid,
        CPUPerc=f"{cpu_percent:.2f}%", MemUsage=f"{bytes_size(used)} / {bytes_size(limit)}",
        MemPerc=f"{mem_percent:.2f}%", NetIO=f"{human_size(rx, 3)} / {human_size(tx, 3)}",
        BlockIO=f"{human_size(read, 3)} / {human_size(write, 3)}",
        PIDs=str((doc.get("pids_stats") or {}).get("current", 0)),
    )


def memory_used(mem: dict[str, Any]) -> int:
    """Usage without the inactive page cache, as docker's CLI counts it (cgroup v1's key, then v2's)."""
    usage: int = mem.get("usage", 0)
    stats = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in stats and stats[key] < usage:
            return usage - int(stats[key])
    return usage


@command()
def stats_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.template import Format

    s = session(args)
    targets = _targets(s, args)
    fmt = Format.parse(args.format, STATS_TABLE)
    if args.no_stream:
        docs = _one_shot(s, targets)
        rows = [stats_row(ref, docs[ref], not args.no_trunc) for ref, _ in targets]
        print(fmt.render(rows, STATS_HEADERS), end="")
        return 0
    return _live(s, targets, fmt, not args.no_trunc)


def _targets(s: Session, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(What the CONTAINER column shows, the object's name): the named ones, else the running (or all)."""
    cs = Containers(s)
    if args.containers:
        return [(ref, cs.get(ref)["metadata"]["name"]) for ref in args.containers]
    items = sorted(cs.all(), key=lambda o: o["metadata"].get("creationTimestamp", ""), reverse=True)
    return [(short_id(container_id(o)), o["metadata"]["name"]) for o in items if args.all or is_running(o)]


def _client(s: Session) -> Any:
    """A client of its own: one HTTP connection per thread."""
    from k3c.kubeclient import Client

    return Client(s.client.conn, timeout=30.0)


def _one_shot(s: Session, targets: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Every container's document at once (each takes the server a second: it samples twice)."""
    def fetch(target: tuple[str, str]) -> tuple[str, dict[str, Any]]:
        client = _client(s)
        try:
            return target[0], client.get(s.path(LOCAL_CONTAINERS, target[1], "stats"), stream="false")
        finally:
            client.close()

    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return dict(pool.map(fetch, targets))


def _live(s: Session, targets: list[tuple[str, str]], fmt: Any, trunc: bool) -> int:
    """Redraw the table until interrupted, from one stats stream per container (in threads)."""
    import json

    latest: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def follow(ref: str, name: str) -> None:
        client = _client(s)
        try:
            for line in client.lines(s.path(LOCAL_CONTAINERS, name, "stats"), stream="true"):
                with lock:
                    latest[ref] = json.loads(line)
        except Exception:  # the container went away: its row stays with the last numbers
            return
        finally:
            client.close()

    for ref, name in targets:
        threading.Thread(target=follow, args=(ref, name), daemon=True).start()
    while True:
        with lock:
            rows = [stats_row(ref, latest[ref], trunc) for ref, _ in targets if ref in latest]
        sys.stdout.write("\033[2J\033[H" + fmt.render(rows, STATS_HEADERS))
        sys.stdout.flush()
        time.sleep(REDRAW)
