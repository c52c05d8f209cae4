#!/usr/bin/env python3
"""Benchmark of docker-compose on k3c's Docker API socket against dockerd (run on demand, as root:
`.venv/bin/python bench/compose.py`).

One run: a private ``k3c daemon`` (tests.support.daemon_harness: its own dirs, bridge and subnet) and a
private dockerd 20.10 (bench/peers.py: its own data root, socket and bridge, no iptables rules), each with the
same locally made busybox image (no registry). Each gets its own copy of the issue's compose project
(tests/support/compose_project.py: a built service, an image service and one depending on both, a published
port, a named volume, the default network and one more; subnets and ports reserved per copy), built once
with ``docker-compose build``. Then ``--rounds`` rounds of ``up -d`` followed by ``down -v``, the tools
alternating (the order rotates each round, so background load hits both alike), each command timed from the
client's start to its exit.

Prints a markdown table of the medians and the k3c/docker ratios (aim: up and down ≤ 1.2× dockerd);
``--json FILE`` writes every sample. Everything it started is stopped by PID and its directories removed;
what had to be cleaned up by force is printed as leftovers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a script: tests.support from the repo
from peers import DOCKER, DOCKERD, DockerPeer, PeerError

from k3c.oci.layout import busybox_image
from tests.support.compose_project import COMPOSE, Project
from tests.support.daemon_harness import DaemonProcess, pick_subnet, skip_reason
from tests.support.docker_peer import load_image

IMAGE = "bench.local/busybox:latest"
AIM = 1.2
STEPS = ("up -d", "down -v")


def time_step(project: Project, step: str) -> float:
    start = time.perf_counter()
    project.ok(*step.split())
    return time.perf_counter() - start


def measure(projects: dict[str, Project], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of each step per tool, ``rounds`` samples each, the tools' order rotating per round."""
    samples: dict[str, dict[str, list[float]]] = {tool: {s: [] for s in STEPS} for tool in projects}
    order = list(projects)
    for i in range(rounds):
        for tool in order[i % len(order):] + order[:i % len(order)]:
            for step in STEPS:
                samples[tool][step].append(time_step(projects[tool], step))
    return samples


def report(samples: dict[str, dict[str, list[float]]]) -> list[str]:
    k3c, docker = samples["k3c"], samples["docker"]
    lines = ["| step | k3c socket (median s) | dockerd (median s) | k3c / dockerd |", "|---|---|---|---|"]
    for step in [*STEPS, "up + down"]:
        mine = [a + b for a, b in zip(*k3c.values(), strict=True)] if step == "up + down" else k3c[step]
        theirs = [a + b for a, b in zip(*docker.values(), strict=True)] if step == "up + down" else docker[step]
        ratio = statistics.median(mine) / statistics.median(theirs)
        verdict = "met" if ratio <= AIM else "NOT met"
        lines.append(f"| `docker-compose {step}` | {statistics.median(mine):.2f} | {statistics.median(theirs):.2f} "
                     f"| {ratio:.2f}× (aim ≤ {AIM}×: {verdict}) |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="up/down rounds per tool (default 5)")
    p.add_argument("--json", type=Path, help="write every sample to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [p for p in (COMPOSE, DOCKER, DOCKERD, "/usr/bin/skopeo") if not Path(p).exists()]
    if reason := skip_reason() or (f"missing {', '.join(missing)}" if missing else None):
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="k3c-bench-compose-"))
    daemon = DaemonProcess(base / "k3c")
    peer = DockerPeer(base / "docker", pick_subnet())
    projects: dict[str, Project] = {}
    leftovers: list[str] = []
    try:
        print("starting the k3c daemon and dockerd ...", flush=True)
        daemon.start()
        daemon.import_image(IMAGE, busybox_image())
        peer.start()
        load_image(peer, base, IMAGE, busybox_image())
        projects = {"k3c": Project(base / "k3c-project", str(daemon.state_dir / "docker.sock"), IMAGE, "benchproj"),
                    "docker": Project(base / "docker-project", str(peer.socket), IMAGE, "benchproj")}
        for project in projects.values():
            project.ok("build")
        print(f"measuring {args.rounds} rounds of up -d / down -v on each ...", flush=True)
        samples = measure(projects, args.rounds)
    except (PeerError, AssertionError) as err:
        print(f"failed: {err}", file=sys.stderr)
        return 1
    finally:
        for project in projects.values():
            with contextlib.suppress(Exception):
                project.run("down", "-v", "--timeout", "0")
        with contextlib.suppress(Exception):
            peer.remove_all()
        leftovers += [f"dockerd: {f}" for f in peer.stop() if not f.startswith("deleted bridge")]
        leftovers += [f"k3c: {f}" for f in daemon.close()]
        shutil.rmtree(base, ignore_errors=True)
    print("\n".join(report(samples)))
    print(f"\n{args.rounds} rounds, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; leftovers: "
          f"{leftovers or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "leftovers": leftovers}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
