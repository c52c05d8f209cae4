#!/usr/bin/env python3
"""Benchmark at scale, side by side (run on demand, as root: `.venv/bin/python bench/scale.py`).

How each tool behaves as a node fills up: the same locally made busybox image, the same commands, one run.
The tools are set up as in ``bench/containers.py`` (on the same rig, bench/rig.py): k3c is the
installed CLI (bench/installed.py) on a private ``k3c daemon``; docker is Debian's dockerd 20.10 with
private dirs; podman is podman 4.3 with private storage.

The containers are started round-robin (one per tool in turn, the order rotating), so background load hits
every tool alike, up to ``--containers`` each (300). At each checkpoint (10, 100, 200, 300) it reports:

- ``run -d`` latency of the last 10 started (p50, p90);
- ``ps``, ``ps -a --format '{{.Names}}'`` and ``inspect`` of one container (median of 5), and for k3c
  ``kubectl get lc`` too;
- memory: the PSS (``/proc/PID/smaps_rollup``) of each tool's machinery: k3c's daemon, API server, operator,
  containerd, shims and pause processes; dockerd, its containerd and shims; podman's conmons. The containers'
  own ``sleep`` processes are left out (they are the same for all). The fixed overhead is the PSS with no
  container; the cost per container is the least-squares slope over the checkpoints.

Then, with all running: ``run --rm IMG true`` (median of ``--rm-runs``), and one ``rm -f`` of all.
Prints a markdown table with the k3c/docker ratios against issue 16's aims; ``--json FILE`` keeps every sample.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a script: tests.support from the repo
from containers import p90
from peers import processes_under
from rig import IMAGE, CommandFailed, Setup, Tool, can_run, report, rig

from tests.support.daemon_harness import _used_networks, wait_until

CHECKPOINTS = (10, 100, 200, 300)
LAST = 10  #: run -d latencies reported at a checkpoint: the last this many started
REPEAT = 5  #: ps / inspect / kubectl samples per checkpoint
WORKLOAD = b"sleep"  #: the containers' own process, left out of the memory figures


# ---- subnets -------------------------------------------------------------------------------------------
def wide_subnet(taken: list[str]) -> str:
    """A free 10.x.0.0/22 for one tool: a /24 (the tests' size) holds 253 containers, fewer than 300."""
    used = [*_used_networks(), ipaddress.ip_network("10.88.0.0/16"), *map(ipaddress.ip_network, taken)]
    for x in range(150, 250):
        for y in range(0, 256, 4):
            net = ipaddress.ip_network(f"10.{x}.{y}.0/22")
            if not any(net.overlaps(u) for u in used):
                taken.append(str(net))
                return str(net)
    raise RuntimeError("no free /22 in 10.150-249.x.x")


# ---- memory --------------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()
    return b""


def machinery(roots: Sequence[int]) -> set[int]:
    """``roots`` and all their descendants, except the containers' own workload processes."""
    kids, found, todo = _children(), set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        if not _cmdline(pid).startswith(WORKLOAD):
            found.add(pid)
        todo += kids.get(pid, [])
    return found


def pss_kib(pids: Sequence[int] | set[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total


def tool_roots(setup: Setup, tool: Tool) -> list[int]:
    """The processes a tool's machinery hangs from: its daemon and whatever mentions its private dirs
    (shims name their containerd's socket, conmon its storage)."""
    if tool.name == "k3c":
        return [p for p in [setup.daemon.pid] if p] + processes_under(setup.daemon.base)
    peer = next(p for p in setup.peers if p.name == tool.name)
    return processes_under(peer.base)


# ---- measuring -----------------------------------------------------------------------------------------
def median_of(tool: Tool, argv: list[str], n: int = REPEAT) -> float:
    return statistics.median(tool.timed(argv)[1] for _ in range(n))


def checkpoint(setup: Setup, tool: Tool, names: list[str], latencies: list[float]) -> dict[str, Any]:
    last = latencies[-LAST:]
    point: dict[str, Any] = {
        "containers": len(names),
        "run_d_p50": statistics.median(last), "run_d_p90": p90(last),
        "ps": median_of(tool, tool.cmd("ps")),
        "ps_a_names": median_of(tool, tool.cmd("ps", "-a", "--format", "{{.Names}}")),
        "inspect": median_of(tool, tool.cmd("inspect", names[len(names) // 2])),
        "pss_kib": pss_kib(machinery(tool_roots(setup, tool))),
    }
    if tool.name == "k3c":
        kubectl = Tool("kubectl", ["kubectl"], ["--kubeconfig", str(setup.daemon.kubeconfig)])
        point["kubectl_get_lc"] = median_of(kubectl, kubectl.cmd("get", "lc"))
    return point


def fill(setup: Setup, tools: list[Tool], count: int, checkpoints: Sequence[int]) -> dict[str, Any]:
    """Start ``count`` containers per tool round-robin; measure at each checkpoint."""
    out: dict[str, Any] = {t.name: {"points": [], "names": [], "latencies": []} for t in tools}
    for t in tools:
        out[t.name]["pss_empty_kib"] = pss_kib(machinery(tool_roots(setup, t)))
    for i in range(count):
        for t in tools[i % len(tools):] + tools[:i % len(tools)]:
            name = f"scale-{i}"
            out[t.name]["latencies"].append(t.timed(t.cmd("run", "-d", "--name", name, IMAGE, "sleep", "3000"))[1])
            out[t.name]["names"].append(name)
        if i + 1 in checkpoints:
            for t in tools:
                point = checkpoint(setup, t, out[t.name]["names"], out[t.name]["latencies"])
                out[t.name]["points"].append(point)
                print(f"  {t.name:7} {i + 1:4} running: run -d p50 {point['run_d_p50']:.3f} s, "
                      f"ps {point['ps']:.3f} s, PSS {point['pss_kib'] / 1024:.0f} MiB", flush=True)
    return out


def finish(tools: list[Tool], out: dict[str, Any], rm_runs: int) -> None:
    """``run --rm`` with all running, then ``rm -f`` of all (until gone)."""
    for t in tools:
        out[t.name]["run_rm"] = statistics.median(
            t.timed(t.cmd("run", "--rm", IMAGE, "true"))[1] for _ in range(rm_runs))
    for t in tools:
        start = time.perf_counter()
        t.call(t.rm_f(out[t.name]["names"]), timeout=1800)
        wait_until(lambda t=t: t.count(all_=True) == 0, 300, f"{t.name} containers gone", 0.2)
        out[t.name]["rm_f_all"] = time.perf_counter() - start


def slope_kib(result: dict[str, Any]) -> float:
    """PSS per added container: the least-squares slope over (0, empty) and the checkpoints."""
    xs = [0] + [p["containers"] for p in result["points"]]
    ys = [result["pss_empty_kib"]] + [p["pss_kib"] for p in result["points"]]
    return statistics.linear_regression(xs, ys).slope


# ---- report --------------------------------------------------------------------------------------------
def _ratio(k3c: float | None, docker: float | None) -> str:
    return "—" if not k3c or not docker else f"{k3c / docker:.2f}×"


def print_report(results: dict[str, Any]) -> None:
    tools = [t for t in ("k3c", "docker", "podman") if t in results["tools"]]
    r = results["tools"]
    print("\n| measure | " + " | ".join(tools) + " | k3c/docker |")
    print("|---" * (len(tools) + 2) + "|")

    def row(label: str, values: dict[str, float | None], unit: str = "s") -> None:
        cells = [("—" if values.get(t) is None else f"{values[t]:.3f} s" if unit == "s" else f"{values[t]:.1f} MiB")
                 for t in tools]
        print(f"| {label} | " + " | ".join(cells) + f" | {_ratio(values.get('k3c'), values.get('docker'))} |")

    for i, n in enumerate(results["checkpoints"]):
        def at(key: str, i: int = i) -> dict[str, float | None]:
            return {t: r[t]["points"][i].get(key) if len(r[t]["points"]) > i else None for t in tools}
        row(f"`run -d` p50 at {n}", at("run_d_p50"))
        row(f"`run -d` p90 at {n}", at("run_d_p90"))
        row(f"`ps` at {n}", at("ps"))
        row(f"`ps -a --format {{{{.Names}}}}` at {n}", at("ps_a_names"))
        row(f"`inspect` at {n}", at("inspect"))
        if "kubectl_get_lc" in r["k3c"]["points"][i]:
            print(f"| `kubectl get lc` at {n} | {r['k3c']['points'][i]['kubectl_get_lc']:.3f} s |"
                  + " |" * len(tools))
    row("PSS with no container", {t: r[t]["pss_empty_kib"] / 1024 for t in tools}, "MiB")
    row("PSS per added container", {t: slope_kib(r[t]) / 1024 for t in tools}, "MiB")
    row(f"`run --rm` at {results['checkpoints'][-1]}", {t: r[t].get("run_rm") for t in tools})
    row(f"`rm -f` of {results['checkpoints'][-1]}", {t: r[t].get("rm_f_all") for t in tools})
    k, d, last = r["k3c"], r.get("docker"), results["checkpoints"][-1]
    if d:
        kp, dp = k["points"][-1], d["points"][-1]
        first = k["points"][0]["run_d_p50"]
        aims = [
            (f"`run -d` p50 at {last} ≤ docker's and ≤ 0.30 s", kp["run_d_p50"] <= min(dp["run_d_p50"], 0.30)),
            (f"`run -d` p50 at {last} within 1.2× of its own at {results['checkpoints'][0]}",
             kp["run_d_p50"] <= 1.2 * first),
            (f"`ps` at {last} ≤ 1.5× docker's and ≤ 0.10 s", kp["ps"] <= min(1.5 * dp["ps"], 0.10)),
            ("PSS per added container ≤ docker's", slope_kib(k) <= slope_kib(d)),
            (f"`rm -f` of {last} ≤ docker's", k.get("rm_f_all", 1e9) <= d.get("rm_f_all", 0)),
        ]
        print("\nAims (issue 16):")
        for label, met in aims:
            print(f"- {label}: {'met' if met else 'NOT met'}")
    print(f"\nLoad average at start {results['load_start']}, at end {results['load_end']}; "
          f"versions {results['versions']}")
    for note in results["notes"] + results["leftovers"]:
        print(f"- {note}")


# ---- main ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=CHECKPOINTS[-1], help="containers per tool (300)")
    p.add_argument("--rm-runs", type=int, default=7, help="`run --rm` runs at the end (7)")
    p.add_argument("--skip", default="", help="comma-separated tools to leave out: docker, podman")
    p.add_argument("--json", type=Path, help="write every sample here")
    p.add_argument("--keep-logs", type=Path, help="copy the k3c daemon's logs here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not can_run():
        return 1
    checkpoints = sorted({c for c in CHECKPOINTS if c < args.containers} | {args.containers})
    load_start = [round(x, 2) for x in os.getloadavg()]
    taken: list[str] = []
    results: dict[str, Any] = {}
    try:
        with rig("scale", set(filter(None, args.skip.split(","))), args.keep_logs,
                 lambda used: wide_subnet(taken)) as setup:
            tools = [t for t in setup.tools if t.name in ("k3c", "docker", "podman")]
            print(f"filling to {args.containers} containers each: {', '.join(t.name for t in tools)}", flush=True)
            measured = fill(setup, tools, args.containers, checkpoints)
            finish(tools, measured, args.rm_runs)
            results = {"tools": measured, "checkpoints": checkpoints}
    except (CommandFailed, AssertionError, subprocess.TimeoutExpired) as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 1
    results.update(load_start=load_start, load_end=[round(x, 2) for x in os.getloadavg()])
    report(results, setup, args, print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
