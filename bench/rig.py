"""The rig of a side-by-side benchmark: the k3c daemon, dockerd and podman set up alike, then torn down.

``bench/containers.py`` and ``bench/scale.py`` measure on the same rig: one temp dir, one locally made busybox
image (``busybox_image()``, no registry) loaded into each tool, a private ``k3c daemon``
(tests.support.daemon_harness.DaemonProcess) driven through the installed CLI (bench/installed.py), and the
peers of bench/peers.py. A peer that cannot run becomes a note; everything started is stopped by PID at the
end and what had to be forced is kept as leftovers for the report. Imported by those scripts, which put the
repo on ``sys.path`` first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installed import installed_cli
from peers import (
    DOCKER,
    DOCKERD,
    PODMAN,
    DockerPeer,
    Peer,
    PeerError,
    PodmanPeer,
    disable_package_conflist,
    docker_archive,
    ensure_packages,
    run_checked,
)

from k3c import __version__ as k3c_version
from k3c.oci.layout import busybox_image, write_oci_archive
from tests.support.daemon_harness import DaemonProcess, pick_subnet, skip_reason

IMAGE = "bench.local/busybox:latest"
CTR_NAMESPACE = "bench"


class CommandFailed(RuntimeError):
    """A measured command exited non-zero."""


    """A measured command exited non-zero."""


# ---- tools -----------------------------------------------------------------------------------------------
@dataclass
class Tool:
    """One CLI: ``prefix SUBCOMMAND flags ARGS`` (k3c wants its global flags after the subcommand)."""

    name: str
    prefix: list[str]
    flags: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    force_rm: list[str] = field(default_factory=lambda: ["-f"])

    def cmd(self, sub: str, *args: str) -> list[str]:
        return [*self.prefix, sub, *self.flags, *args]

    def run_rm(self, name: str) -> list[str]:
        if self.name == "ctr":
            return self.cmd("run", "--rm", IMAGE, name, "true")
        return self.cmd("run", "--rm", "--name", name, IMAGE, "true")

    def call(self, argv: Sequence[str], timeout: float = 120.0) -> str:
        cp = subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=timeout)
        if cp.returncode != 0:
            raise CommandFailed(f"{self.name}: `{' '.join(argv[len(self.prefix):])}` exited {cp.returncode}: "
                                f"{(cp.stderr or cp.stdout).strip()[-300:]}")
        return cp.stdout

    def timed(self, argv: Sequence[str]) -> tuple[float, float]:
        """(wall-clock start, seconds taken) of one successful command."""
        wall, start = time.time(), time.perf_counter()
        self.call(argv)
        return wall, time.perf_counter() - start

    def rm_f(self, names: Sequence[str]) -> list[str]:
        return self.cmd("rm", *self.force_rm, *names)

    def count(self, all_: bool = False) -> int:
        return len(self.call(self.cmd("ps", *(["-a"] if all_ else []), "-q")).split())


def k3c_tool(daemon: DaemonProcess, cli: Path) -> Tool:
    """The installed ``k3c`` (bench/installed.py: this checkout, as pip installs it), on the private
    daemon's kubeconfig."""
    return Tool("k3c", [str(cli.parent / "python"), str(cli)], ["--kubeconfig", str(daemon.kubeconfig)])


# ---- set-up and clean-up -------------------------------------------------------------------------------
@dataclass
class Setup:
    """What the run made: temp dir, daemon, peers, tools; and notes for the report."""

    base: Path
    daemon: DaemonProcess
    peers: list[Peer] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def python_env(base: Path) -> None:
    """Byte-code caching on for k3c's processes (as for any installed package), cached in the temp dir."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(base / "pycache")


def start_k3c(setup: Setup, archive: Path) -> None:
    setup.daemon.start()
    setup.daemon.import_image(IMAGE, busybox_image())
    setup.tools.append(k3c_tool(setup.daemon, installed_cli(setup.base / "cli")))
    socket = setup.daemon.containerd_address
    run_checked(["ctr", "-a", socket, "-n", CTR_NAMESPACE, "images", "import", str(archive)])
    setup.versions.update(k3c=k3c_revision(), containerd=run_checked(["containerd", "--version"]).split()[2])


def k3c_revision() -> str:
    """k3c's version and, in a checkout, its commit (``+dirty``: uncommitted changes outside bench/)."""
    repo = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        return k3c_version
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench"],
                           capture_output=True, text=True).stdout.strip()
    return f"{k3c_version} ({head}{'+dirty' if dirty else ''})"


def start_peers(setup: Setup, archive: Path, skip: set[str],
                subnets: Callable[[list[str]], str] | None = None) -> None:
    """docker and podman if wanted and possible; a peer that cannot run becomes a note. ``subnets`` picks
    each peer's subnet (default: a /24 apart from the others)."""
    wanted = {"docker": (DockerPeer, {DOCKERD: "docker.io", DOCKER: "docker.io"}),
              "podman": (PodmanPeer, {PODMAN: "podman"})}
    used = [setup.daemon.subnet]
    for name, (cls, binaries) in wanted.items():
        if name in skip:
            continue
        try:
            setup.notes += ensure_packages(binaries)
            if name == "podman" and (note := disable_package_conflist()):
                setup.notes.append(note)
            peer = cls(setup.base / name, (subnets or fresh_subnet)(used))
            setup.peers.append(peer)
            peer.start()
            peer.load(archive)
            setup.versions[name] = peer.version()
            setup.tools.append(Tool(name, peer.cli(), env=peer.env, force_rm=list(peer.force_rm)))
        except (PeerError, RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            setup.notes.append(f"{name} left out: {err}")


def fresh_subnet(used: list[str]) -> str:
    while (subnet := pick_subnet()) in used:
        pass
    used.append(subnet)
    return subnet


def remove_ctr_containers(socket: str) -> list[str]:
    """``ctr run --rm`` cleans up after itself; anything left (a failed run) is killed and removed."""
    ctr = ["ctr", "-a", socket, "-n", CTR_NAMESPACE]
    left = subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True).stdout.split()
    for cid in left:
        subprocess.run([*ctr, "tasks", "kill", "-s", "KILL", cid], capture_output=True)
        subprocess.run([*ctr, "tasks", "delete", "-f", cid], capture_output=True)
        subprocess.run([*ctr, "containers", "rm", cid], capture_output=True)
    return [f"ctr container {cid}" for cid in left]


def tear_down(setup: Setup, keep_logs: Path | None) -> None:
    """Remove all containers, stop the peers and the daemon by PID, remove their dirs and networks."""
    for tool in setup.tools:
        with contextlib.suppress(CommandFailed, subprocess.TimeoutExpired):
            if tool.name in ("docker", "podman") and tool.count(all_=True):
                setup.leftovers.append(f"{tool.name}: containers left after the benchmark (removed)")
    for peer in setup.peers:
        with contextlib.suppress(Exception):
            peer.remove_all()
        setup.leftovers += [f"{peer.name}: {item}" for item in peer.stop() if not item.startswith("deleted bridge")]
    if setup.daemon.pid is not None:
        setup.leftovers += remove_ctr_containers(setup.daemon.containerd_address)
    setup.leftovers += [f"k3c: {item}" for item in setup.daemon.close()]
    logs = setup.base / f"{setup.daemon.base.name}-logs"  # where the harness keeps the daemon's logs
    if keep_logs is not None and logs.is_dir():
        shutil.copytree(logs, keep_logs, dirs_exist_ok=True)
    shutil.rmtree(setup.base, ignore_errors=True)



def can_run() -> bool:
    """Whether this machine can run the benchmark (root, containerd, ...); if not, why, on stderr."""
    if reason := skip_reason():
        print(f"cannot run: {reason}", file=sys.stderr)
        return False
    return True


@contextlib.contextmanager
def rig(name: str, skip: set[str], keep_logs: Path | None,
        subnets: Callable[[list[str]], str] | None = None) -> Iterator[Setup]:
    """The k3c daemon and the peers not in ``skip``, each with the busybox image, in a temp dir named for
    benchmark ``name``; torn down (:func:`tear_down`) when the block ends, however it ends. ``subnets``
    picks each one's subnet (default: the daemon's own choice, and a /24 apart for each peer)."""
    base = Path(tempfile.mkdtemp(prefix=f"k3c-bench-{name}-"))
    python_env(base)
    setup = Setup(base, DaemonProcess(base / "k3c"))
    try:
        if subnets is not None:
            setup.daemon.subnet = subnets([])
        archive = base / "busybox-oci.tar"
        write_oci_archive(archive, {IMAGE: busybox_image()})
        print("starting the k3c daemon, dockerd and podman ...", flush=True)
        start_k3c(setup, archive)
        start_peers(setup, docker_archive(archive, base / "busybox-docker.tar", IMAGE), skip, subnets)
        yield setup
    finally:
        tear_down(setup, keep_logs)


def report(results: dict[str, Any], setup: Setup, args: argparse.Namespace,
           print_report: Callable[[dict[str, Any]], None]) -> None:
    """The results with what the rig noted (versions, notes, leftovers) and the run's settings: printed by
    the benchmark's ``print_report`` and, with ``--json FILE``, written there whole."""
    results.update(versions=setup.versions, notes=setup.notes, leftovers=setup.leftovers,
                   settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
