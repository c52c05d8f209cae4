#!/usr/bin/env python3
"""Benchmark of push and pull (run on demand: `.venv/bin/python bench/images.py [--size-mb 100] [--runs 5]`).

One run, side by side, against one local registry (Debian's docker-registry on 127.0.0.1, htpasswd auth,
plain HTTP as loopback registries are used):

- push of a locally made multi-layer image (incompressible data, gzip layers: ~``--size-mb`` MB) to a
  fresh registry each round (so no tool can skip or mount a blob it or another tool uploaded before;
  skopeo keeps a blob-location cache across runs), so every blob is really uploaded:
  ``k3c push`` (CLI → ImagePush object → operator → containerd Content.Read → registry),
  ``ctr images push`` (containerd's own client), ``skopeo copy oci:DIR docker://…``;
- pull of that image after removing it (and its content, synchronously) from containerd each time:
  ``k3c pull`` (CLI → Image object → operator → CRI PullImage, fetch + unpack),
  ``ctr images pull`` (fetch + unpack), ``skopeo copy docker://… oci:DIR`` (fetch only, no containerd).

k3c's figures are end to end: the CLI process, the API round trips, the operator's work, until the
command exits. Python byte-code caching is on for k3c's processes (as for any installed package, even if
this shell sets PYTHONDONTWRITEBYTECODE), with the cache in the benchmark's temp dir. Prints per-tool
medians and the ratio to ctr (the aim: k3c within 1.2x of ctr).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a script: tests.support from the repo
from k3c.oci.layout import OCIImage, write_oci_archive
from tests.support.images_harness import (
    ImagesStack,
    RegistryProcess,
    import_image,
    new_base,
    remove_base,
    sized_image,
)

USER, PASSWORD = "k3c", "bench-pass"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(*argv: str) -> None:
    cp = subprocess.run(argv, capture_output=True, text=True)
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {cp.stderr}{cp.stdout}")


class Bench:
    def __init__(self, stack: ImagesStack, registry: RegistryProcess, image: OCIImage, layout: Path) -> None:
        self.stack = stack
        self.registry = registry
        self.image = image
        self.layout = layout
        self.local = "bench.local/source:latest"
        self.push_registry: RegistryProcess | None = None

    @property
    def push_host(self) -> str:
        assert self.push_registry is not None
        return self.push_registry.host

    # ---- push ----

    def fresh_registry(self, i: int) -> None:
        """A new, empty registry for push round ``i`` (k3c logged in to it)."""
        if self.push_registry is not None:
            self.push_registry.stop()
        self.push_registry = RegistryProcess(self.stack.base / f"push-registry-{i}", users={USER: PASSWORD}).start()
        self.stack.k3c("login", "-u", USER, "--password-stdin", self.push_registry.host, input=PASSWORD + "\n")

    def push_k3c(self, i: int) -> float:
        ref = f"{self.push_host}/k3c/push{i}:v1"
        self.stack.ctr("images", "tag", self.local, ref)
        self.stack.wait(lambda: self._has_object(ref), what="object of the tag")
        return timed(lambda: self.stack.k3c("push", "-q", ref))

    def push_ctr(self, i: int) -> float:
        ref = f"{self.push_host}/ctr/push{i}:v1"
        return timed(lambda: run("ctr", "-a", self.stack.socket, "-n", "k8s.io", "images", "push", "--plain-http",
                                 "--user", f"{USER}:{PASSWORD}", ref, self.local))

    def push_skopeo(self, i: int) -> float:
        ref = f"{self.push_host}/skopeo/push{i}:v1"
        return timed(lambda: run("skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-creds",
                                 f"{USER}:{PASSWORD}", f"oci:{self.layout}", f"docker://{ref}"))

    def _has_object(self, ref: str) -> bool:
        from k3c.oci.reference import normalize

        return any(o["spec"]["reference"] == normalize(ref) for o in self.stack.image_objects())

    # ---- pull ----

    @property
    def remote(self) -> str:
        return f"{self.registry.host}/bench/pull:v1"

    def forget(self) -> None:
        """Remove every name of the image from containerd, synchronously, so the next pull fetches it all."""
        def gone() -> bool:
            names = [n for n, t in self.stack.containerd_images().items() if t == self.image.target.digest]
            if names:  # CRI re-creates its ID reference while it still knows the image by another name
                self.stack.ctr("images", "rm", "--sync", *names)
            content = self.stack.ctr("content", "ls").stdout
            return not any(d["digest"] in content for d in self.image.manifest["layers"])

        self.stack.wait(gone, what="content gone")
        self.stack.wait(lambda: not self._has_object(self.remote), what="object gone")

    def pull_k3c(self, i: int) -> float:
        self.forget()
        return timed(lambda: self.stack.k3c("pull", "-q", self.remote))

    def pull_ctr(self, i: int) -> float:
        self.forget()
        return timed(lambda: run("ctr", "-a", self.stack.socket, "-n", "k8s.io", "images", "pull", "--plain-http",
                                 "--user", f"{USER}:{PASSWORD}", self.remote))

    def pull_skopeo(self, i: int) -> float:
        target = self.stack.base / f"skopeo-pull-{i}"
        try:
            return timed(lambda: run("skopeo", "copy", "-q", "--src-tls-verify=false", "--src-creds",
                                     f"{USER}:{PASSWORD}", f"docker://{self.remote}", f"oci:{target}:bench"))
        finally:
            shutil.rmtree(target, ignore_errors=True)


def rounds(runs: int, tools: dict[str, Callable[[int], float]],
           before: Callable[[int], None] = lambda i: None) -> dict[str, list[float]]:
    """``runs`` rounds; the tools' order rotates each round so none always goes first."""
    out: dict[str, list[float]] = {name: [] for name in tools}
    names = list(tools)
    for i in range(runs):
        before(i)
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            out[name].append(tools[name](i))
    return out


def report(title: str, results: dict[str, list[float]], size_mb: float) -> None:
    ctr = statistics.median(results["ctr"])
    print(f"\n{title} (~{size_mb:.0f} MB, {len(results['ctr'])} runs)")
    print(f"{'tool':10} {'median':>9} {'min':>8} {'max':>8} {'MB/s':>8} {'vs ctr':>8}")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"{name:10} {med:8.2f}s {min(times):7.2f}s {max(times):7.2f}s {size_mb / med:8.1f} {med / ctr:7.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=float, default=100.0)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    base = new_base("k3cbench-")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
    registry = RegistryProcess(base / "registry", users={USER: PASSWORD})
    stack = ImagesStack(base / "stack")
    try:
        print(f"making a {args.size_mb:.0f} MB image of {args.layers} gzip layers ...", flush=True)
        image = sized_image(args.size_mb, layers=args.layers, seed="bench")
        size_mb = sum(d["size"] for d in image.manifest["layers"]) / 1e6
        registry.start()
        stack.start()
        stack.k3c("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD + "\n")  # warms the cache
        import_image(stack.socket, "bench.local/source:latest", image)
        archive = base / "bench.tar"
        write_oci_archive(archive, {"bench": image})
        layout = base / "layout"
        layout.mkdir()
        run("tar", "-xf", str(archive), "-C", str(layout))
        bench = Bench(stack, registry, image, layout)
        try:
            pushes = rounds(args.runs, {"k3c": bench.push_k3c, "ctr": bench.push_ctr, "skopeo": bench.push_skopeo},
                            before=bench.fresh_registry)
        finally:
            if bench.push_registry is not None:
                bench.push_registry.stop()
        report("push", pushes, size_mb)
        run("ctr", "-a", stack.socket, "-n", "k8s.io", "images", "push", "--plain-http", "--user",
            f"{USER}:{PASSWORD}", bench.remote, bench.local)
        stack.ctr("images", "rm", "--sync", "bench.local/source:latest")
        pulls = rounds(args.runs, {"k3c": bench.pull_k3c, "ctr": bench.pull_ctr, "skopeo": bench.pull_skopeo})
        report("pull", pulls, size_mb)
    finally:
        stack.stop()
        registry.stop()
        remove_base(base)


if __name__ == "__main__":
    main()
