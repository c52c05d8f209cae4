#!/usr/bin/env python3
"""Image build benchmark, side by side (run on demand: `.venv/bin/python bench/build.py [--runs 5]`).

Three builders on the same two contexts, in one run, interleaved per iteration so drift hits all alike:

- **k3c**: `k3c build -q -t …` (the CLI process as `pip install` installs it — see :func:`installed_cli` —
  wall clock) against the stack the daemon runs: an API server with ImageBuild's subresources, the
  ImageBuild operator (native engine) and containerd, started here in temporary directories
  (tests/support/build_harness.py). The time includes creating the object, the operator's build into
  containerd's k8s.io namespace (tagged, unpacked, runnable) and the CLI following the log to the end.
- **docker**: `DOCKER_BUILDKIT=1 docker build -q -t …` against a dockerd 20.10 started here with private
  paths, its own bridge and no iptables (see ../shared/PLATFORM-NOTES.md). Skipped with a note if no
  dockerd is found (``--dockerd``, ``$DOCKERD``, PATH).
- **buildah**: plain `buildah bud --layers --isolation chroot -q -t …` in a private storage; the image stays
  in buildah's storage (no export to containerd): k3c's fallback engine, for comparison.

Contexts: *small* (two-stage, a few files) and *large* (~50 MB of incompressible files in 200 files, several
RUN steps). Scenarios, each measured ``--runs`` times: *cold* (build caches emptied first; base images stay),
*cached* (nothing changed), *changed* (one source file edited, so only the steps after its COPY re-run).
Prints medians and the ratios k3c/docker and k3c/buildah.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # a script: tests.support from the repo

from installed import installed_cli  # noqa: E402

from k3c.oci.layout import busybox_image, write_oci_archive  # noqa: E402
from tests.support.build_harness import BUSYBOX, BuildStack, unmount_under  # noqa: E402

SMALL_DOCKERFILE = """\
FROM busybox AS build
COPY src/ /src/
RUN cd /src && cat *.txt > /out.txt && sha1sum /out.txt > /out.sum
FROM busybox
COPY --from=build /out.txt /out.sum /app/
CMD ["cat", "/app/out.sum"]
"""

LARGE_DOCKERFILE = """\
FROM busybox
RUN mkdir -p /opt/app && echo setup > /opt/app/setup
COPY data/ /opt/app/data/
RUN du -s /opt/app/data > /opt/app/du.txt
COPY src/ /opt/app/src/
RUN find /opt/app -type f | wc -l > /opt/app/count && md5sum /opt/app/src/* > /opt/app/src.md5
RUN echo done > /opt/app/done
"""


# ------------------------------------------------------------------------------------------ contexts


def make_contexts(base: Path) -> dict[str, Path]:
    small = base / "ctx-small"
    (small / "src").mkdir(parents=True)
    (small / "Dockerfile").write_text(SMALL_DOCKERFILE)
    for i in range(5):
        (small / "src" / f"part{i}.txt").write_text(f"part {i}\n" * 20)
    large = base / "ctx-large"
    (large / "data").mkdir(parents=True)
    (large / "src").mkdir()
    (large / "Dockerfile").write_text(LARGE_DOCKERFILE)
    for i in range(200):
        (large / "data" / f"blob{i:03}.bin").write_bytes(os.urandom(256 * 1024))
    (large / "src" / "main.txt").write_text("main\n")
    return {"small": small, "large": large}


def touch_source(ctx: Path) -> None:
    """The one source file change: a line appended to a file copied before the last RUN steps."""
    target = next(iter(sorted((ctx / "src").iterdir())))
    with open(target, "a") as f:
        f.write(f"change {uuid.uuid4().hex}\n")


# ------------------------------------------------------------------------------------------ builders


@dataclass
class Builder:
    """One side of the comparison: how to build, and how to empty its build cache."""

    name: str
    build: Callable[[Path, str], None]
    wipe: Callable[[str], None]
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def timed(self, ctx_name: str, scenario: str, ctx: Path, tag: str) -> None:
        t0 = time.perf_counter()
        self.build(ctx, tag)
        self.samples.setdefault((ctx_name, scenario), []).append(time.perf_counter() - t0)


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… failed ({cp.returncode}): {cp.stderr[-2000:]}")
    return cp


class K3cSide:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.stack = BuildStack(base / "k3c")
        self.cli = "k3c"

    def start(self) -> None:
        self.cli = str(installed_cli(self.base / "cli"))
        self.stack.start()
        self.stack.import_image(BUSYBOX, busybox_image())

    def builder(self) -> Builder:
        return Builder("k3c", self.build, self.wipe)

    def build(self, ctx: Path, tag: str) -> None:
        cp = run([self.cli, "build", "-q", "-t", tag, str(ctx)], env=self.stack.env(), check=False)
        if cp.returncode != 0:
            raise RuntimeError(f"k3c build failed: {cp.stderr[-2000:]}")

    def wipe(self, tag: str) -> None:
        """Empty every cache k3c has: the native engine's layer cache (its lease and records), buildah's
        layers, and the image in containerd (as `docker rmi` + `builder prune` do for docker); base images
        stay, unpacked (as docker keeps them)."""
        b = self.stack.builder_root
        run(["buildah", "--root", str(b / "storage"), "--runroot", str(b / "run"), "--storage-driver", "overlay",
             "rmi", "--prune"], check=False)
        for d in ("records", "exports"):
            for f in (b / d).glob("*.json"):
                f.unlink()
        from k3c.builder.layercache import prune as prune_cache
        from k3c.oci.reference import normalize

        self.stack.containerd_call(lambda store: store.delete(normalize(tag), sync=True))
        self.stack.containerd_call(lambda store: prune_cache(store, b / "native"))

    def stop(self) -> None:
        problems = self.stack.close()
        if problems:
            print(f"warning: k3c stack left {problems}", file=sys.stderr)


class BuildahSide:
    def __init__(self, base: Path, archive: Path) -> None:
        self.root = base / "buildah"
        self.archive = archive

    def g(self) -> list[str]:
        return ["buildah", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "overlay"]

    def start(self) -> None:
        image_id = run([*self.g(), "pull", "-q", f"oci-archive:{self.archive}"]).stdout.strip().splitlines()[-1]
        run([*self.g(), "tag", image_id, BUSYBOX])

    def builder(self) -> Builder:
        return Builder("buildah", self.build, self.wipe)

    def build(self, ctx: Path, tag: str) -> None:
        run([*self.g(), "bud", "--isolation", "chroot", "--layers", "--pull=false", "-q", "-t", tag, str(ctx)])

    def wipe(self, tag: str) -> None:
        run([*self.g(), "rmi", "-f", tag], check=False)
        run([*self.g(), "rmi", "--prune"], check=False)

    def stop(self) -> None:
        run([*self.g(), "rm", "-a"], check=False)


class DockerSide:
    def __init__(self, base: Path, dockerd: str, docker: str, archive: Path) -> None:
        self.base = base / "docker"
        self.dockerd = dockerd
        self.docker = docker
        self.archive = archive
        self.sock = self.base / "docker.sock"
        self.bridge = "k3cbd" + uuid.uuid4().hex[:6]
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        bindir = str(Path(self.dockerd).parent)
        clientdir = str(Path(self.docker).parent)
        return {"DOCKER_HOST": f"unix://{self.sock}", "DOCKER_BUILDKIT": "1",
                "PATH": f"{clientdir}:{bindir}:{os.environ.get('PATH', '')}", "DOCKER_CONFIG": str(self.base / "cfg")}

    def start(self) -> None:
        self.base.mkdir(parents=True)
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", "10.253.77.1/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        log = open(self.base / "dockerd.log", "wb")  # the child keeps it
        self.proc = subprocess.Popen(
            [self.dockerd, "--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec"),
             "-H", f"unix://{self.sock}", "--pidfile", str(self.base / "dockerd.pid"), "--bridge", self.bridge,
             "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--oom-score-adjust", "0",
             "--userland-proxy=false", "--storage-driver", "overlay2"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env()}, start_new_session=True)
        deadline = time.monotonic() + 60
        while run([self.docker, "version"], env=self.env(), check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(self.base / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        docker_archive = self.base / "busybox.docker.tar"
        run(["skopeo", "copy", "--insecure-policy", f"oci-archive:{self.archive}",
             f"docker-archive:{docker_archive}:{BUSYBOX}"])
        run([self.docker, "load", "-i", str(docker_archive)], env=self.env())

    def builder(self) -> Builder:
        return Builder("docker", self.build, self.wipe)

    def build(self, ctx: Path, tag: str) -> None:
        run([self.docker, "build", "-q", "-t", tag, str(ctx)], env=self.env())

    def wipe(self, tag: str) -> None:
        run([self.docker, "rmi", "-f", tag], env=self.env(), check=False)
        run([self.docker, "builder", "prune", "-af"], env=self.env(), check=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        run(["ip", "link", "del", self.bridge], check=False)


def find_dockerd(explicit: str | None) -> tuple[str, str] | None:
    """(dockerd, docker client of the same release), or None: a newer static client needs buildx for BuildKit."""
    dockerd = explicit or os.environ.get("DOCKERD") or shutil.which("dockerd")
    if not dockerd or not Path(dockerd).exists():
        return None
    client = Path(dockerd).resolve().parent.parent / "bin" / "docker"
    if not client.exists():
        client = Path("/usr/bin/docker")
    return (dockerd, str(client)) if client.exists() else None


# ------------------------------------------------------------------------------------------ main


def measure(builders: list[Builder], contexts: dict[str, Path], runs: int) -> None:
    for ctx_name, ctx in contexts.items():
        tag = f"bench-{ctx_name}:latest"
        for b in builders:  # warm-up: the first build of all also loads base images into caches
            b.build(ctx, tag)
        for i in range(runs):
            for b in builders:
                b.wipe(tag)
                b.timed(ctx_name, "cold", ctx, tag)
                b.timed(ctx_name, "cached", ctx, tag)
            touch_source(ctx)
            for b in builders:
                b.timed(ctx_name, "changed", ctx, tag)
            print(f"  {ctx_name}: run {i + 1}/{runs} done", file=sys.stderr)


def report(builders: list[Builder], runs: int, notes: list[str]) -> dict[str, dict[str, float]]:
    names = [b.name for b in builders]
    header = f"{'context':8} {'scenario':8} " + " ".join(f"{n + ' s':>10}" for n in names)
    ratios = [n for n in ("docker", "buildah") if n in names]
    header += "".join(f" {'k3c/' + r:>12}" for r in ratios)
    print(f"\nmedian of {runs} runs (wall clock, seconds)\n" + header)
    table: dict[str, dict[str, float]] = {}
    for ctx_name in ("small", "large"):
        for scenario in ("cold", "cached", "changed"):
            med = {b.name: statistics.median(b.samples[(ctx_name, scenario)]) for b in builders}
            table[f"{ctx_name}/{scenario}"] = med
            row = f"{ctx_name:8} {scenario:8} " + " ".join(f"{med[n]:>10.2f}" for n in names)
            row += "".join(f" {med['k3c'] / med[r]:>12.2f}" for r in ratios)
            print(row)
    for note in notes:
        print(f"note: {note}")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dockerd", help="dockerd binary (default $DOCKERD or PATH)")
    p.add_argument("--json", type=Path, help="also write the medians here")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/build.py needs root (containerd, buildah, dockerd)")
    base = Path(tempfile.mkdtemp(prefix="k3c-bench-build-", dir="/tmp"))
    archive = base / "busybox.oci.tar"
    write_oci_archive(archive, {BUSYBOX: busybox_image()})
    notes = ["k3c = installed `k3c build` CLI against API server + ImageBuild operator (native engine) + "
             "containerd (the daemon's wiring), image in containerd k8s.io", "buildah = bare `buildah bud "
             "--layers`, image left in buildah's storage (no export to containerd)"]
    sides: list = [K3cSide(base), BuildahSide(base, archive)]
    found = find_dockerd(args.dockerd)
    if found:
        sides.insert(1, DockerSide(base, found[0], found[1], archive))
    else:
        notes.append("docker column skipped: no dockerd found (install docker.io, or pass --dockerd PATH)")
    started = []
    try:
        for side in sides:
            side.start()
            started.append(side)
        contexts = make_contexts(base)
        builders = [s.builder() for s in sides]
        measure(builders, contexts, args.runs)
        table = report(builders, args.runs, notes)
        if args.json:
            args.json.write_text(json.dumps(table, indent=2))
    finally:
        for side in reversed(started):
            side.stop()
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
