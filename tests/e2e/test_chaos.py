"""Chaos: kill -9 of `k3c daemon`, or of its containerd, at random points while containers are run and
removed, images pulled (from a local registry) and images built, over several rounds (issue 10, item 15).
Two thirds of the containers are on two user networks (issue 15).

After every round, whatever was acknowledged must have converged and nothing may be stuck or left over:

- a `run -d` that exited 0 made a container that runs (unless a later acknowledged `rm -f` removed it);
  an `rm -f` that exited 0 left no object; every LocalContainer is Running, Exited or Failed, none
  Terminating;
- a `pull` that exited 0 left a Ready Image; no Image is Pending, Pulling or Terminating;
- a `build` that exited 0 left a Succeeded ImageBuild; every ImageBuild ended (Succeeded, Failed or
  Canceled);
- tests/support/leftovers.py finds nothing: no shim, netns, IP lease (of any network), mount, runc
  container, bundle, sandbox, container, containerd lease or active snapshot beyond what k3c keeps on
  purpose (its ``KEPT``); after the last clean stop also no user network's conflist, bridge or iptables rule.

Seeded and time-bounded: ``K3C_CHAOS_SEED`` (default 1015) picks the kill points and kinds,
``K3C_CHAOS_SECONDS`` (default 45; more for a longer run) how long new rounds are started (at least three
rounds; a round takes 10-20 s here, the test about a minute in all). A failure names the seed and the
round; ``K3C_CHAOS_KEEP=1`` keeps the temporary directory with the daemon's, operator's and containerd's
logs (``node-logs/``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k3c.api import IMAGE_BUILDS, IMAGES, LOCAL_CONTAINERS
from k3c.oci.layout import busybox_image
from k3c.oci.reference import normalize
from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, wait_until
from tests.support.images_harness import RegistryProcess

SEED = int(os.environ.get("K3C_CHAOS_SEED", "1015"))
NETWORKS = ("chaos-a", "chaos-b")
BUDGET = float(os.environ.get("K3C_CHAOS_SECONDS", "45"))

pytestmark = [pytest.mark.containerd,
              pytest.mark.skipif(not shutil.which("docker-registry"), reason="needs docker-registry"),
              pytest.mark.timeout(BUDGET + 600)]  # the last round may start just before the budget ends
MIN_ROUNDS = 3
CONVERGE = 90.0  #: seconds a round's objects get to settle after the kill
PULL_IMAGES = 6  #: distinct images in the registry, pulled two a round


@dataclass
class Ledger:
    """What the CLI acknowledged (exit 0), by kind."""

    running: set[str] = field(default_factory=set)  #: containers a `run -d` acknowledged, not removed since
    removed: set[str] = field(default_factory=set)
    pulled: set[str] = field(default_factory=set)
    built: set[str] = field(default_factory=set)  #: image tags


@dataclass
class Command:
    kind: str  #: run, rm, pull, build
    subject: str  #: the container name(s), image reference or tag
    proc: subprocess.Popen[bytes]


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="k3cx-", dir="/tmp"))  # short: containerd's socket path limit
    yield path
    if not os.environ.get("K3C_CHAOS_KEEP"):
        shutil.rmtree(path, ignore_errors=True)


def test_chaos_kill9_daemon_and_containerd(base: Path) -> None:
    rnd = random.Random(SEED)
    registry = RegistryProcess(base / "registry", users=None).start()
    d = DaemonProcess(base / "node")
    try:
        d.start()
        d.import_image(TEST_IMAGE, busybox_image())
        refs = _seed_registry(d, registry)
        ctx = _build_context(base / "ctx")
        for net in NETWORKS:  # user networks: their bridges, rules and leases are in the leftover check too
            assert _k3c(d, "network", "create", net).wait(60) == 0
        ledger = Ledger()
        started, rnd_i = time.monotonic(), 0
        while rnd_i < MIN_ROUNDS or time.monotonic() - started < BUDGET:
            kind = ("daemon", "containerd")[rnd_i % 2] if rnd_i < 2 else rnd.choice(("daemon", "containerd"))
            where = f"seed {SEED}, round {rnd_i}, kill -9 of {kind}"
            _round(d, rnd, rnd_i, kind, refs, ctx, ledger, where)
            rnd_i += 1
    finally:
        problems = d.close()
        registry.stop()
    assert not problems, f"seed {SEED}: after the last round's clean stop: {problems}"


# ------------------------------------------------------------------------------------------ one round


def _round(d: DaemonProcess, rnd: random.Random, r: int, kind: str, refs: list[str], ctx: Path, ledger: Ledger,
           where: str) -> None:
    pulls = [refs[(2 * r) % len(refs)], refs[(2 * r + 1) % len(refs)]]
    for ref in pulls:  # pull for real, not find the image there
        _k3c(d, "rmi", "-f", ref).wait(60)
        ledger.pulled.discard(ref)
    names = [f"c{r}-{i}" for i in range(6)]
    doomed = sorted(ledger.running)[: 3]  # containers of earlier rounds
    cmds = [Command("run", n, _k3c(d, "run", "-d", "--name", n, *_network(i), TEST_IMAGE, "sleep", "600"))
            for i, n in enumerate(names)]
    if doomed:
        cmds.append(Command("rm", " ".join(doomed), _k3c(d, "rm", "-f", *doomed)))
    cmds += [Command("pull", ref, _k3c(d, "pull", "-q", ref)) for ref in pulls]
    tag = f"k3c.test/chaos:{r}"
    cmds.append(Command("build", tag, _k3c(d, "build", "-q", "-t", tag, "--build-arg", f"ROUND={r}-{SEED}",
                                           str(ctx))))
    time.sleep(rnd.uniform(0.3, 2.5))
    if kind == "daemon":
        d.kill9()
        d.start()
    else:
        _kill_containerd(d)
    for cmd in cmds:
        _settle(cmd, ledger)
    acked = [f"{c.kind} {c.subject}" for c in cmds if c.proc.returncode == 0]
    print(f"{where}: acknowledged {acked}", flush=True)  # shown with a failure
    _converged(d, ledger, where)
    try:
        d.wait_no_leftovers(timeout=90)  # network state is swept once 30 s old, at two sweeps 10 s apart
    except AssertionError as err:
        raise AssertionError(f"{where}: {err}") from None


def _network(i: int) -> list[str]:
    """Every third container on the default network, the others on one of the user networks."""
    return [] if i % 3 == 0 else ["--network", NETWORKS[i % 2]]


def _settle(cmd: Command, ledger: Ledger) -> None:
    """Wait for a command; note what it acknowledged."""
    try:
        code = cmd.proc.wait(120)
    except subprocess.TimeoutExpired:
        cmd.proc.kill()
        code = cmd.proc.wait()
    if code != 0:
        if cmd.kind == "rm":  # it may have gone through before the kill: those may be gone or running
            ledger.running.difference_update(cmd.subject.split())
        return
    if cmd.kind == "run":
        ledger.running.add(cmd.subject)
    elif cmd.kind == "rm":
        for name in cmd.subject.split():
            ledger.running.discard(name)
            ledger.removed.add(name)
    elif cmd.kind == "pull":
        ledger.pulled.add(cmd.subject)
    else:
        ledger.built.add(cmd.subject)


def _kill_containerd(d: DaemonProcess) -> None:
    """kill -9 of the containerd the daemon started; the daemon starts a new one."""
    old = d.status()["containerdPid"]
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: (p := d.status().get("containerdPid")) != old and p, 30, "a new containerd")
    d.started_pids.add(new)


# ------------------------------------------------------------------------------------------ convergence


def _converged(d: DaemonProcess, ledger: Ledger, where: str) -> None:
    last: list[str] = []

    def settled() -> bool:
        nonlocal last
        last = _unsettled(d, ledger)
        return not last

    try:
        wait_until(settled, CONVERGE, "convergence", interval=0.5)
    except AssertionError:
        raise AssertionError(f"{where}: not converged within {CONVERGE:.0f} s: {last}") from None


def _unsettled(d: DaemonProcess, ledger: Ledger) -> list[str]:
    """What is not (yet) as the acknowledged commands and the rules of the module docstring want."""
    found: list[str] = []
    containers = {o["metadata"]["name"]: o for o in d.api.get(LOCAL_CONTAINERS.path()).get("items", [])}
    for name, obj in containers.items():
        phase = (obj.get("status") or {}).get("phase")
        if obj["metadata"].get("deletionTimestamp"):
            found.append(f"container {name} Terminating")
        elif phase not in ("Running", "Exited", "Failed"):
            found.append(f"container {name} {phase or 'without status'}")
    found += [f"container {n} (acknowledged) is {_phase(containers.get(n))}" for n in sorted(ledger.running)
              if _phase(containers.get(n)) != "Running"]
    found += [f"container {n} (removed) still exists" for n in sorted(ledger.removed) if n in containers]
    images = {o["spec"]["reference"]: o for o in d.api.get(IMAGES.path()).get("items", [])}
    for ref, obj in images.items():
        if obj["metadata"].get("deletionTimestamp"):
            found.append(f"image {ref} Terminating")
        elif _phase(obj) in ("Pending", "Pulling"):
            found.append(f"image {ref} {_phase(obj)}")
    found += [f"image {r} (pulled) is {_phase(images.get(normalize(r)))}" for r in sorted(ledger.pulled)
              if _phase(images.get(normalize(r))) != "Ready"]
    builds = d.api.get(IMAGE_BUILDS.path()).get("items", [])
    for obj in builds:
        if obj["metadata"].get("deletionTimestamp") or _phase(obj) not in ("Succeeded", "Failed", "Canceled"):
            found.append(f"build {obj['metadata']['name']} {_phase(obj)}"
                         f"{' Terminating' if obj['metadata'].get('deletionTimestamp') else ''}")
    tags = {tag for o in builds if _phase(o) == "Succeeded" for tag in o["spec"].get("tags") or []}
    found += [f"build of {t} (acknowledged) did not succeed" for t in sorted(ledger.built)
              if t not in tags and normalize(t) not in {normalize(x) for x in tags}]
    return found


def _phase(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return "gone"
    return str((obj.get("status") or {}).get("phase") or "Pending")


# ------------------------------------------------------------------------------------------ set-up


def _k3c(d: DaemonProcess, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "K3C_KUBECONFIG": str(d.kubeconfig)}
    return subprocess.Popen([sys.executable, "-m", "k3c.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _seed_registry(d: DaemonProcess, registry: RegistryProcess) -> list[str]:
    """Distinct small images in the registry (and not in containerd): each pull moves a layer."""
    applets = ["sh", "sleep", "echo", "cat", "ls", "true", "false", "env"]
    refs = []
    for i in range(PULL_IMAGES):
        ref = f"{registry.host}/chaos/busybox:v{i}"
        d.import_image(ref, busybox_image(applets=applets[: i + 2]))
        for args in (("push", "-q", ref), ("rmi", ref)):
            cp = subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, timeout=120,
                                env={**os.environ, "K3C_KUBECONFIG": str(d.kubeconfig)})
            assert cp.returncode == 0, f"k3c {' '.join(args)}: {cp.stderr.decode()}"
        refs.append(ref)
    return refs


def _build_context(ctx: Path) -> Path:
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nARG ROUND\nRUN echo \"round $ROUND\" > /round\n"
                                    "COPY hello /hello\nRUN cat /hello /round > /both\n")
    (ctx / "hello").write_text("hello from the chaos build\n")
    return ctx
