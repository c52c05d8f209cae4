"""A private build stack for the ImageBuild tests: containerd, an API server with the build subresources, and
the ImageBuild operator, each a child process in temporary directories, stopped by its own PID.

Why not the ``daemon`` fixture: the build tests need the API server to serve ImageBuild's ``log`` and
``context`` subresources and the operator to run the ImageBuild reconciler; this stack wires exactly
those (:class:`k3c.builder.logs.BuildSubresources` and ``python -m k3c.operator --controllers builds``) the way the
daemon does, without the rest of the daemon.

``python -m tests.support.build_harness apiserver --data-dir D --port P --containerd-address S`` is the API server
child: k3c's :class:`~k3c.apiserver.server.APIServer` with :class:`k3c.builder.logs.BuildSubresources` and
the images' save/load subresources (for ``k3c build --output``) mounted, CRDs installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from k3c.api import IMAGE_BUILDS, KUBECONFIG_FILE
from k3c.apierrors import NotFound
from k3c.daemon.supervisor import operator_command
from tests.support.daemon_harness import pick_subnet
from tests.support.harness import REPO, free_port, wait_until

T = TypeVar("T")
BUSYBOX = "docker.io/library/busybox:latest"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def unmount_under(base: Path) -> list[str]:
    prefix = str(base) + "/"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    mine = sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True)
    for m in mine:
        subprocess.run(["umount", "-l", m], capture_output=True)
    return mine


class Child:
    """A child process with its log file; :meth:`stop` signals only this PID."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                         env={**os.environ, **(env or {})}, start_new_session=True)
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


class BuildStack:
    """containerd + API server (with build subresources) + ImageBuild operator, all under ``base``."""

    def __init__(self, base: Path, engine: str = "native") -> None:
        from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess

        self.engine = engine  #: the operator's --build-engine: native (buildah as fallback) or buildah
        self.base = base.absolute()
        self.root = self.base / "root"
        tag = uuid.uuid4().hex[:6]
        self.containerd_config = ContainerdConfig(
            root_dir=self.root / "containerd", state_dir=self.base / "state" / "containerd",
            bridge=f"k3cb{tag}", network_name=f"k3cb{tag}", subnet=pick_subnet())
        self.containerd = ContainerdProcess(self.containerd_config)
        self.port = free_port()
        self.apiserver: Child | None = None
        self.operator: Child | None = None
        self.started: list[int] = []

    @property
    def socket(self) -> str:
        return str(self.containerd_config.socket_path)

    @property
    def kubeconfig(self) -> Path:
        return self.root / KUBECONFIG_FILE

    @property
    def builder_root(self) -> Path:
        return self.root / "builder"

    def env(self) -> dict[str, str]:
        return {"K3C_KUBECONFIG": str(self.kubeconfig), "KUBECONFIG": str(self.kubeconfig)}

    # ---- life cycle ----

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        asyncio.run(self.containerd.start())
        assert self.containerd.pid is not None
        self.started.append(self.containerd.pid)
        from k3c.daemon.pause import ensure_pause_image

        # the builder's network is a pod sandbox (k3c/builder/network.py): CRI needs the pause image
        asyncio.run(ensure_pause_image(self.socket, self.base / "cache"))
        self.apiserver = Child("apiserver", [sys.executable, "-m", __name__, "apiserver",
                                             "--data-dir", str(self.root), "--port", str(self.port),
                                             "--containerd-address", self.socket],
                               self.base / "apiserver.log")
        self.started.append(self.apiserver.pid)
        ready = self.base / "apiserver.ready"
        server = self.apiserver
        wait_until(lambda: ready.exists() or not server.running(), 30, "the API server")
        assert server.running(), server.tail()
        self.start_operator()

    def start_operator(self) -> None:
        ready = self.base / "operator.ready"
        ready.unlink(missing_ok=True)
        op = self.operator = Child("operator", [
            *operator_command(), "--controllers", "builds", "--kubeconfig", str(self.kubeconfig),
            "--containerd-address", self.socket, "--root-dir", str(self.root), "--node-name", "build-node",
            "--build-engine", self.engine, "--ready-file", str(ready)], self.base / "operator.log")
        self.started.append(op.pid)
        wait_until(lambda: ready.exists() or not op.running(), 60, "the operator")
        assert op.running(), op.tail()

    def close(self) -> list[str]:
        """Delete every ImageBuild, stop everything we started (by PID), report and remove leftovers."""
        problems: list[str] = []
        try:
            self.delete_all_builds()
        except Exception as err:  # report, and clean up regardless
            problems.append(f"deleting ImageBuilds failed: {err}")
        for child in (self.operator, self.apiserver):
            if child is not None:
                child.stop()
        problems += self.build_leftovers()
        problems += [f"pod sandbox {sid}" for sid in self.sandboxes()]  # the build network's is gone too
        asyncio.run(self.containerd.stop())
        problems += [f"process {p} still running" for p in self.started if alive(p)]
        for pid in self.started:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        from k3c.daemon.containerd import cleanup_network

        cleanup_network(self.containerd_config)
        unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        return problems

    # ---- API ----

    def api(self) -> Any:
        from k3c import kubeclient

        return kubeclient.Client(kubeclient.load(str(self.kubeconfig)))

    def build_path(self, name: str = "", namespace: str = "default") -> str:
        return IMAGE_BUILDS.path(namespace, name or None)

    def get_build(self, name: str) -> dict[str, Any] | None:
        api = self.api()
        try:
            return api.get(self.build_path(name))
        except NotFound:
            return None
        finally:
            api.close()

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.get_build(name)
            return obj if obj and (obj.get("status") or {}).get("phase") in phases else None

        return wait_until(check, timeout, f"ImageBuild {name} to be {'/'.join(phases)}")

    def delete_all_builds(self) -> None:
        api = self.api()
        try:
            for obj in api.get(IMAGE_BUILDS.path()).get("items", []):
                meta = obj["metadata"]
                api.delete(self.build_path(meta["name"], meta["namespace"]))
            wait_until(lambda: not api.get(IMAGE_BUILDS.path()).get("items"), 60,
                       "all ImageBuilds to be deleted")
        finally:
            api.close()

    # ---- CLI ----

    def k3c(self, *args: str, input: bytes | None = None, timeout: float = 180,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "k3c.cli.main", *args]
        cp = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, cwd=cwd or REPO,
                            env={**os.environ, **self.env()})
        return subprocess.CompletedProcess(cp.args, cp.returncode, cp.stdout.decode(errors="replace"),
                                           cp.stderr.decode(errors="replace"))

    # ---- containerd / buildah inspection ----

    def containerd_call(self, fn: Callable[[Any], Any]) -> Any:
        from k3c.cri.imagestore import ContainerdImages

        async def run() -> Any:
            async with ContainerdImages(self.socket) as store:
                return await fn(store)

        return asyncio.run(run())

    def import_image(self, name: str, image: Any) -> None:
        self.containerd_call(lambda store: store.import_image(name, image))

    def image(self, name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]] | None:
        """(manifest, config, files) of a containerd image, files merged over its layers; None if absent."""

        async def read(store: Any) -> Any:
            record = await store.get(name)
            if record is None:
                return None
            manifest = json.loads(await store.read(record.target.digest))
            config = json.loads(await store.read(manifest["config"]["digest"]))
            files: dict[str, bytes] = {}
            for layer in manifest["layers"]:
                _apply_layer(files, await store.read(layer["digest"]))
            return manifest, config, files

        return self.containerd_call(read)

    def build_leftovers(self) -> list[str]:
        """What no finished build may leave: buildah containers, the native engine's uncommitted snapshots
        (``k3c-build-*``), runc containers and mounts under the builder's directory."""
        from k3c.cri.snapshots import Snapshots

        out = [f"build container {c}" for c in self.buildah_containers()]

        async def snapshots(store: Any) -> list[str]:
            return await Snapshots(store).keys("k3c-build-")

        out += [f"snapshot {k}" for k in self.containerd_call(snapshots)]
        runc_root = self.builder_root / "native" / "runc"
        out += [f"runc container {p.name}" for p in runc_root.iterdir()] if runc_root.is_dir() else []
        prefix = str(self.builder_root / "native") + "/"
        with open("/proc/self/mountinfo") as f:
            out += [f"mount {line.split()[4]}" for line in f if line.split()[4].startswith(prefix)]
        return out

    def sandboxes(self) -> list[str]:
        """IDs of every CRI pod sandbox in this stack's containerd."""
        from k3c.cri.runtime import CRIClient

        async def run() -> list[str]:
            async with CRIClient(self.socket, timeout=10) as cri:
                return [sb.id for sb in await cri.list_pod_sandbox()]

        return asyncio.run(run())

    def buildah_containers(self) -> list[str]:
        storage = self.builder_root / "storage"
        if not storage.exists():
            return []
        out = subprocess.run(["buildah", "--root", str(storage), "--runroot", str(self.builder_root / "run"),
                              "--storage-driver", "overlay", "containers", "-q"], capture_output=True, text=True)
        return out.stdout.split()


def _apply_layer(files: dict[str, bytes], data: bytes) -> None:
    """Merge one layer tar into ``files`` (path → content; directories end with ``/``), whiteouts applied."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for m in tar.getmembers():
            path = m.name.removeprefix("./").rstrip("/")
            base = os.path.basename(path)
            if base.startswith(".wh."):
                files.pop(os.path.join(os.path.dirname(path), base[4:]), None)
            elif m.isfile():
                f = tar.extractfile(m)
                files[path] = f.read() if f else b""
            elif m.isdir():
                files.setdefault(path + "/", b"")
            elif m.issym():
                files[path] = b"-> " + m.linkname.encode()


# ------------------------------------------------------------------------------------------ API server child


async def _serve(data_dir: Path, port: int, containerd_address: str) -> None:
    from k3c.apiserver.server import APIServer, ServerConfig
    from k3c.archives.subresource import ArchiveEndpoints
    from k3c.builder.logs import BuildSubresources
    from k3c.builder.paths import BuildPaths
    from k3c.daemon.supervisor import install_crds

    server = APIServer(ServerConfig(data_dir=data_dir, port=port))
    server.handler.mount(BuildSubresources(BuildPaths(data_dir)))
    server.handler.mount(ArchiveEndpoints(containerd_address))  # images' save (k3c build --output)
    await server.start()
    await asyncio.to_thread(install_crds, server.kubeconfig_path)
    (data_dir.parent / "apiserver.ready").write_text(str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["apiserver"])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--containerd-address", required=True)
    args = p.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args.data_dir, args.port, args.containerd_address))


if __name__ == "__main__":
    main()
