#!/usr/bin/env python3
"""Benchmark of container start-up, side by side (run on demand, as root: `.venv/bin/python bench/containers.py`).

One run, one locally made busybox image (``busybox_image()``, no registry), four tools:

- k3c: a private ``k3c daemon`` (tests.support.daemon_harness.DaemonProcess: temp dir, own bridge and subnet),
  driven through the real CLI (``k3c run --kubeconfig FILE ...``: k3c takes its global flags after the
  command); everything from the CLI process's start to its exit is counted;
- docker: Debian's dockerd 20.10 with a private data root, exec root, socket and bridge (bench/peers.py);
- podman: podman 4.3 with private storage and configs, its default CNI bridge network (bench/peers.py);
- ctr: ``ctr run --rm`` against the k3c daemon's own containerd (namespace ``bench``, no CNI networking);
- k3c-socket: the same docker CLI against the k3c daemon's Docker API socket (``<state-dir>/docker.sock``):
  the issue-14 comparison, docker's own client on k3c against the same client on dockerd.

It measures:

1. ``run --rm IMG true``: ``--runs`` runs per tool after ``--warmups``, interleaved round-robin (the order
   rotates each round) so background load hits all tools alike; median and p90;
2. ``run -d IMG sleep 300`` × ``--containers`` (total time, one after the other), then ``ps`` with all of
   them running (median and p90 of ``--ps-runs``), then one ``rm -f`` of all (k3c, docker, podman);
3. with ``--breakdown``: where k3c's ``run --rm`` spends its time, from the API watch and containerd's event
   stream (median ms after the CLI started), plus the CLI's interpreter start and imports.

Prints a markdown table with the k3c/docker ratio of medians (and k3c-socket/docker when that ran) and the
aims (``run --rm`` no slower than docker, ``ps`` under 0.25 s, the socket ≤ 1.0× dockerd); ``--json FILE`` writes every sample. Missing docker.io/podman packages
are installed with apt-get; a peer that cannot run is left out with a note. Everything it started is
stopped by PID, and its temp dirs, bridges and iptables rules are removed; what had to be forced is
printed as leftovers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a script: tests.support from the repo
from peers import DOCKER
from rig import CTR_NAMESPACE, IMAGE, CommandFailed, Setup, Tool, can_run, report, rig

from k3c import kubeclient
from k3c.api import LOCAL_CONTAINERS
from tests.support.daemon_harness import DaemonProcess, wait_until

AIM_PS = 0.25
SOCKET_TOOL = "k3c-socket"


# ---- tools beside the rig's ----------------------------------------------------------------------------
def socket_tool(daemon: DaemonProcess) -> Tool:
    """Debian's docker CLI on the k3c daemon's Docker API socket (the address its daemon.json announces)."""
    address = daemon.status()["frontends"]["docker"]
    return Tool(SOCKET_TOOL, [DOCKER, "-H", address])


def ctr_tool(socket: str) -> Tool:
    return Tool("ctr", ["ctr", "-a", socket, "-n", CTR_NAMESPACE])


# ---- statistics ----------------------------------------------------------------------------------------
def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]


def summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "p90": p90(values), "min": min(values), "max": max(values)}


# ---- measurements --------------------------------------------------------------------------------------
Observer = Callable[[Tool, str, float, float], None]


def rotated(tools: Sequence[Tool], i: int) -> list[Tool]:
    k = i % len(tools)
    return [*tools[k:], *tools[:k]]


def bench_run_rm(tools: Sequence[Tool], runs: int, warmups: int,
                 observe: Observer | None = None) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """``run --rm IMG true`` round-robin; (times of the measured runs, failures) per tool."""
    times: dict[str, list[float]] = {t.name: [] for t in tools}
    failures: dict[str, list[str]] = {t.name: [] for t in tools}
    for i in range(warmups + runs):
        for tool in rotated(tools, i):
            name = f"bench-rm-{tool.name}-{i}"
            try:
                wall, took = tool.timed(tool.run_rm(name))
            except (CommandFailed, subprocess.TimeoutExpired) as err:
                failures[tool.name].append(str(err))
                continue
            if i >= warmups:
                times[tool.name].append(took)
                if observe is not None:
                    observe(tool, name, wall, took)
        if sys.stdout.isatty():
            print(f"  round {i + 1}/{warmups + runs}{' (warm-up)' if i < warmups else ''}", end="\r", flush=True)
    if sys.stdout.isatty():
        print()
    return times, failures


def bench_bulk(tool: Tool, count: int, ps_runs: int) -> dict[str, Any]:
    """``count`` × ``run -d IMG sleep 300``, ``ps`` ``ps_runs`` times with all running, one ``rm -f`` of all."""
    names = [f"bench-d-{i}" for i in range(count)]
    try:
        start = time.perf_counter()
        for name in names:
            tool.call(tool.cmd("run", "-d", "--name", name, IMAGE, "sleep", "300"))
        run_d = time.perf_counter() - start
        wait_until(lambda: tool.count() >= count, 120, f"{count} {tool.name} containers running", 0.2)
        ps = [tool.timed(tool.cmd("ps"))[1] for _ in range(ps_runs)]
        rows = len(tool.call(tool.cmd("ps")).splitlines()) - 1
        start = time.perf_counter()
        tool.call(tool.rm_f(names), timeout=600)
        rm_f = time.perf_counter() - start
        wait_until(lambda: tool.count(all_=True) == 0, 120, f"{tool.name} containers gone", 0.1)
        gone = time.perf_counter() - start
    except (CommandFailed, AssertionError, subprocess.TimeoutExpired) as err:
        remove_quietly(tool, names)
        return {"error": str(err)}
    return {"run_d_total": run_d, "ps": ps, "ps_rows": rows, "rm_f": rm_f, "rm_f_until_gone": gone}


def remove_quietly(tool: Tool, names: Sequence[str]) -> None:
    with contextlib.suppress(CommandFailed, subprocess.TimeoutExpired):
        tool.call(tool.rm_f(names), timeout=600)


# ---- breakdown of k3c's run --rm -----------------------------------------------------------------------
class Timeline:
    """When each measured ``k3c run --rm`` reached each step: the CLI's start and exit (this process),
    the object's events (an API watch) and its container's events (``ctr events``, containerd's clock)."""

    STEPS = ("object created", "container created", "task started", "task exited", "status Exited",
             "object deleted", "CLI exited")
    TOPICS = {"/containers/create": "container created", "/tasks/start": "task started",
              "/tasks/exit": "task exited"}

    def __init__(self, kubeconfig: Path, socket: str) -> None:
        self.client = kubeclient.Client(kubeclient.load(str(kubeconfig)))
        self.socket = socket
        self.cli: dict[str, tuple[float, float]] = {}
        self.objects: dict[str, dict[str, float]] = {}
        self.cids: dict[str, str] = {}
        self.tasks: dict[str, dict[str, float]] = {}
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["ctr", "-a", self.socket, "events"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        threading.Thread(target=self._containerd, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.client.close()

    def observe(self, tool: Tool, name: str, wall: float, took: float) -> None:
        if tool.name == "k3c":
            self.cli[name] = (wall, wall + took)

    def _watch(self) -> None:
        path = LOCAL_CONTAINERS.path()
        with contextlib.suppress(Exception):  # ends when the daemon stops
            rv = self.client.get(path)["metadata"]["resourceVersion"]
            for event in self.client.watch(path, timeout=3600, resourceVersion=rv):
                self._on_object(event["type"], event["object"], time.time())

    def _on_object(self, kind: str, obj: dict[str, Any], now: float) -> None:
        name, status = obj["metadata"]["name"], obj.get("status") or {}
        marks = self.objects.setdefault(name, {})
        step = {"ADDED": "object created", "DELETED": "object deleted"}.get(kind)
        if status.get("phase") == "Exited":
            marks.setdefault("status Exited", now)
        if step:
            marks.setdefault(step, now)
        if status.get("containerID"):
            self.cids[name] = status["containerID"]

    def _containerd(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split(" ", 6)
            if len(parts) < 7 or parts[5] not in self.TOPICS:
                continue
            with contextlib.suppress(ValueError, KeyError):
                payload = json.loads(parts[6])
                cid = payload.get("container_id") or payload["id"]
                at = datetime.strptime(f"{parts[0]} {parts[1][:15]}", "%Y-%m-%d %H:%M:%S.%f")
                self.tasks.setdefault(cid, {})[self.TOPICS[parts[5]]] = at.replace(tzinfo=UTC).timestamp()

    def marks(self, name: str) -> dict[str, float]:
        """Milliseconds after the CLI started, per step this run reached."""
        start, end = self.cli[name]
        found = {**self.objects.get(name, {}), **self.tasks.get(self.cids.get(name, ""), {}), "CLI exited": end}
        return {step: (found[step] - start) * 1000 for step in self.STEPS if step in found}

    def summary(self) -> dict[str, float]:
        per_run = [self.marks(name) for name in self.cli]
        return {step: statistics.median(vals) for step in self.STEPS
                if (vals := [m[step] for m in per_run if step in m])}


def cli_startup(tool: Tool, runs: int = 7) -> dict[str, float]:
    """The CLI's fixed costs in ms: bare interpreter, `k3c --help`, and the imports `run --rm` makes."""

    def median_ms(argv: list[str]) -> float:
        return statistics.median(tool.timed(argv)[1] for _ in range(runs)) * 1000

    python, rest = tool.prefix[0], tool.run_rm("bench-importtime")[1:]
    cp = subprocess.run([python, "-X", "importtime", *rest], capture_output=True, text=True, env=tool.env)
    return {"python -c pass": median_ms([python, "-c", "pass"]),
            "k3c --help": median_ms([*tool.prefix, "--help"]),
            "imports of run --rm (importtime)": _top_level_import_us(cp.stderr) / 1000}


def _top_level_import_us(report: str) -> int:
    total = 0
    for line in report.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            total += int(parts[1])
    return total


# ---- report --------------------------------------------------------------------------------------------
def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} s"


def ratio(values: dict[str, float | None], tool: str = "k3c") -> str:
    k3c, docker = values.get(tool), values.get("docker")
    return "—" if not k3c or not docker else f"{k3c / docker:.2f}×"


def table_rows(results: dict[str, Any], names: list[str]) -> list[tuple[str, dict[str, float | None]]]:
    runs, bulk = results["run_rm"], results["bulk"]
    count = results["settings"]["containers"]

    def stat(key: str, which: str) -> dict[str, float | None]:
        return {n: (bulk.get(n, {}).get(key) or {}).get(which) for n in names}

    def total(key: str) -> dict[str, float | None]:
        return {n: bulk.get(n, {}).get(key) for n in names}

    return [
        ("`run --rm IMG true`, median", {n: (runs[n] or {}).get("median") for n in names}),
        ("`run --rm IMG true`, p90", {n: (runs[n] or {}).get("p90") for n in names}),
        (f"{count} × `run -d IMG sleep 300`, total", total("run_d_total")),
        (f"`rm -f` of the {count} (one command)", total("rm_f")),
        (f"`ps` with {count} running, median", stat("ps", "median")),
        (f"`ps` with {count} running, p90", stat("ps", "p90")),
    ]


def markdown(results: dict[str, Any]) -> str:
    names = list(results["run_rm"])
    ratios = ["k3c", *([SOCKET_TOOL] if SOCKET_TOOL in names else [])]
    lines = [f"| measure | {' | '.join(names)} | {' | '.join(f'{r}/docker' for r in ratios)} |",
             "|---" + "|---:" * (len(names) + len(ratios)) + "|"]
    for label, values in table_rows(results, names):
        lines.append(f"| {label} | {' | '.join(fmt(values[n]) for n in names)} | "
                     f"{' | '.join(ratio(values, r) for r in ratios)} |")
    return "\n".join(lines)


def aims(results: dict[str, Any]) -> list[str]:
    out = []
    run, docker = (results["run_rm"].get("k3c") or {}), (results["run_rm"].get("docker") or {})
    if run and docker:
        ok = run["median"] <= docker["median"]
        out.append(f"aim `k3c run --rm` ≤ docker's median: {run['median']:.3f} s vs {docker['median']:.3f} s "
                   f"→ {'met' if ok else 'missed'}")
    ps = (results["bulk"].get("k3c", {}).get("ps") or {}).get("median")
    if ps is not None:
        out.append(f"aim `k3c ps` < {AIM_PS} s with {results['settings']['containers']} running: {ps:.3f} s "
                   f"→ {'met' if ps < AIM_PS else 'missed'}")
    if SOCKET_TOOL in results["run_rm"]:
        for label, values in table_rows(results, [SOCKET_TOOL, "docker"]):
            if "p90" not in label and values[SOCKET_TOOL] and values["docker"]:
                ok = values[SOCKET_TOOL] <= values["docker"]
                out.append(f"aim docker CLI on k3c's socket ≤ 1.0× dockerd, {label}: {ratio(values, SOCKET_TOOL)} "
                           f"→ {'met' if ok else 'missed'}")
    return out


def print_report(results: dict[str, Any]) -> None:
    s, m = results["settings"], results["machine"]
    print(f"\n{s['runs']} runs per tool after {s['warmups']} warm-ups, interleaved round-robin; "
          f"{m['cpus']} CPUs; load average {m['load_start']} at start, {m['load_end']} at end\n")
    print(", ".join(f"{k} {v}" for k, v in results["versions"].items()) + "\n")
    print(markdown(results))
    for line in aims(results):
        print(f"\n{line}", end="")
    print()
    for name, failures in results["failures"].items():
        if failures:
            print(f"\n{name}: {len(failures)} failed run(s), first: {failures[0]}")
    for name, bulk in results["bulk"].items():
        if "error" in bulk:
            print(f"\n{name}: run -d/ps/rm -f failed: {bulk['error']}")
    if results.get("breakdown"):
        print_breakdown(results["breakdown"])
    for note in results["notes"]:
        print(f"note: {note}")
    for item in results["leftovers"]:
        print(f"leftover (cleaned up): {item}")


def print_breakdown(breakdown: dict[str, dict[str, float]]) -> None:
    print("\nk3c `run --rm IMG true`, median ms after the CLI started:\n")
    print("| step | ms | since previous |\n|---|---:|---:|")
    previous = 0.0
    for step, ms in breakdown["steps"].items():
        print(f"| {step} | {ms:.0f} | {ms - previous:+.0f} |")
        previous = ms
    print("\nCLI fixed costs (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in breakdown["cli"].items()))


# ---- main ----------------------------------------------------------------------------------------------
def measure(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    timeline = None
    if args.breakdown:
        timeline = Timeline(setup.daemon.kubeconfig, setup.daemon.containerd_address)
        timeline.start()
    try:
        print(f"run --rm: {args.runs} runs × {', '.join(t.name for t in setup.tools)}", flush=True)
        times, failures = bench_run_rm(setup.tools, args.runs, args.warmups,
                                       timeline.observe if timeline else None)
    finally:
        if timeline is not None:
            time.sleep(1.0)  # the last run's deletion events
            timeline.stop()
    bulk: dict[str, dict[str, Any]] = {}
    for tool in setup.tools:
        if tool.name != "ctr":
            print(f"{tool.name}: {args.containers} × run -d, ps × {args.ps_runs}, rm -f", flush=True)
            bulk[tool.name] = bench_bulk(tool, args.containers, args.ps_runs)
    results: dict[str, Any] = {"run_rm_samples": times, "failures": failures,
                               "run_rm": {n: summary(v) for n, v in times.items()},
                               "bulk": {n: {**b, "ps": summary(b["ps"])} if "ps" in b else b for n, b in bulk.items()},
                               "ps_samples": {n: b.get("ps", []) for n, b in bulk.items()}}
    if timeline is not None:
        k3c = next(t for t in setup.tools if t.name == "k3c")
        results["breakdown"] = {"steps": timeline.summary(), "cli": cli_startup(k3c),
                                "per_run": {n: timeline.marks(n) for n in timeline.cli}}
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="measured `run --rm` runs per tool (default 20)")
    p.add_argument("--warmups", type=int, default=2, help="unmeasured rounds first (default 2)")
    p.add_argument("--containers", type=int, default=50, help="containers for run -d/ps/rm -f (default 50)")
    p.add_argument("--ps-runs", type=int, default=10, help="`ps` runs with all containers up (default 10)")
    p.add_argument("--skip", default="", help="comma-separated tools to leave out (docker,podman,ctr,k3c-socket)")
    p.add_argument("--breakdown", action="store_true", help="also time the steps of k3c's run --rm")
    p.add_argument("--json", type=Path, help="write all results and samples here")
    p.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the k3c daemon's logs here at the end")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not can_run():
        return 1
    skip = set(filter(None, args.skip.split(",")))
    load_start = os.getloadavg()
    with rig("containers", skip, args.keep_logs) as setup:
        if "ctr" not in skip:
            setup.tools.append(ctr_tool(setup.daemon.containerd_address))
        if SOCKET_TOOL not in skip and shutil.which(DOCKER):
            setup.tools.append(socket_tool(setup.daemon))
        results = measure(setup, args)
    results["machine"] = {"cpus": os.cpu_count(), "load_start": [round(x, 2) for x in load_start],
                          "load_end": [round(x, 2) for x in os.getloadavg()]}
    report(results, setup, args, print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
