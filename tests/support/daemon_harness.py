"""`k3c daemon` as a child process for tests: private dirs, API port, bridge and subnet; stopped by its PID.

Usage::

    d = DaemonProcess(tmp_path)            # root dir for everything of this daemon
    d.start()                              # waits until API server, containerd and operator are ready
    d.import_image(TEST_IMAGE, busybox_image())
    d.api.create(...)                      # a k3c.kubeclient.Client on d.kubeconfig
    d.stop()  /  d.kill9()  /  d.start()   # restarts keep containers running (re-adoption)
    leftovers = d.close()                  # delete every object, stop, check and clean the host

:meth:`DaemonProcess.close` deletes all LocalContainers and Volumes through the API, stops the daemon,
then reports what was left (the checks of :mod:`tests.support.leftovers`: shims of this daemon's
containerd, network namespaces, IP leases, mounts, runc containers; plus processes it started) and removes
it anyway — by PID and by this daemon's own paths/bridge/subnet only — so a failing test never poisons the
next one. The module-scoped ``daemon`` fixture in conftest.py asserts that list is empty.
:meth:`DaemonProcess.running_leftovers` makes the same checks on a running daemon whose objects converged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

from k3c import kubeclient
from k3c.api import (
    CONTAINER_FINALIZER,
    CRI_MANAGED_LABEL,
    CRI_UID_LABEL,
    FORCE_DELETE_ANNOTATION,
    KUBECONFIG_FILE,
    LOCAL_CONTAINERS,
    NETWORKS,
    VOLUMES,
)
from k3c.apierrors import APIError, NotFound
from k3c.daemon.containerd import ContainerdConfig, cleanup_network, find_shim_pids, leased_ips
from k3c.oci.layout import OCIImage
from tests.support import leftovers
from tests.support.harness import REPO, free_port, wait_until
from tests.support.reservations import SUBNETS

#: The name tests run the locally built busybox image under (no registry involved).
TEST_IMAGE = "k3c.test/busybox:latest"
T = TypeVar("T")


def skip_reason() -> str | None:
    """Why daemon tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for binary in ("containerd", "runc", "gcc"):
        if shutil.which(binary) is None:
            return f"{binary} not installed"
    if not Path("/usr/lib/cni/bridge").exists():
        return "CNI plugins not installed (containernetworking-plugins)"
    if not Path("/bin/busybox").exists():
        return "busybox-static not installed"
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets: list[ipaddress.IPv4Network] = []
    for cmd in (["ip", "-4", "-j", "addr"], ["ip", "-4", "-j", "route"]):
        out = subprocess.run(cmd, capture_output=True, text=True).stdout or "[]"
        for item in json.loads(out):
            for a in item.get("addr_info", []):
                nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
            dst = item.get("dst")
            if dst and dst != "default":
                nets.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    return nets


def pick_subnet() -> str:
    """A random 10.x.y.0/24 overlapping no address or route here, nor k3c's default 10.88.0.0/16, and
    reserved for this process: no other test process on the host gets it (tests.support.reservations)."""
    used = [*_used_networks(), ipaddress.ip_network("10.88.0.0/16")]
    for _ in range(200):
        x, y = random.randint(100, 250), random.randint(0, 255)
        net = ipaddress.ip_network(f"10.{x}.{y}.0/24")
        if not any(net.overlaps(u) for u in used) and SUBNETS.take(x * 256 + y):
            return str(net)
    raise RuntimeError("no free 10.x.y.0/24 subnet found")


def lc_object(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A LocalContainer as the CLI makes it (finalizer included); ``image`` defaults to :data:`TEST_IMAGE`."""
    spec.setdefault("image", TEST_IMAGE)
    return {"apiVersion": LOCAL_CONTAINERS.api_version, "kind": LOCAL_CONTAINERS.kind,
            "metadata": {"name": name, "namespace": namespace, "finalizers": [CONTAINER_FINALIZER]}, "spec": spec}


def read_log(path: str | Path) -> list[tuple[str, str]]:
    """A CRI log file as (stream, text) lines, partial lines joined."""
    out: list[tuple[str, str]] = []
    partial = ""
    for line in Path(path).read_text().splitlines():
        _ts, stream, tag, text = (line.split(" ", 3) + [""])[:4]
        partial += text
        if tag == "F":
            out.append((stream, partial))
            partial = ""
    return out


class DaemonProcess:
    """One `k3c daemon` child with everything private to it (see the module docstring)."""

    def __init__(self, root: Path, extra_args: list[str] | None = None) -> None:
        self.base = Path(root).absolute()
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        tag = uuid.uuid4().hex[:6]
        self.bridge = f"k3cd{tag}"
        self.network_name = f"k3cd{tag}"
        self.subnet = pick_subnet()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_pids: set[int] = set()
        self._api: kubeclient.Client | None = None

    # ---- paths and addresses ----

    @property
    def root_dir(self) -> Path:
        return self.base / "root"

    @property
    def state_dir(self) -> Path:
        return self.base / "state"

    @property
    def log_path(self) -> Path:
        return self.base / "daemon.log"

    def _flag(self, name: str) -> str | None:
        """The value of ``name`` in extra_args (the daemon's own flags win over the harness defaults)."""
        args = self.extra_args
        return args[args.index(name) + 1] if name in args[:-1] else None

    @property
    def kubeconfig(self) -> Path:
        return Path(self._flag("--kubeconfig") or self.root_dir / KUBECONFIG_FILE)

    @property
    def containerd_config(self) -> ContainerdConfig:
        return ContainerdConfig(root_dir=self.root_dir / "containerd", state_dir=self.state_dir / "containerd",
                                bridge=self.bridge, subnet=self.subnet, network_name=self.network_name)

    @property
    def containerd_address(self) -> str:
        return self._flag("--containerd-address") or str(self.containerd_config.socket_path)

    @property
    def node(self) -> leftovers.Node:
        """Where this daemon keeps its runtime state, for :mod:`tests.support.leftovers`."""
        return leftovers.Node(base=self.base, root_dir=self.root_dir, containerd=self.containerd_config,
                              address=self.containerd_address)

    @property
    def pool_size(self) -> int:
        return int(self._flag("--pool-size") or 1)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def api(self) -> kubeclient.Client:
        """A kubeclient on this daemon's kubeconfig (made on first use, after :meth:`start`)."""
        if self._api is None:
            self._api = kubeclient.Client(kubeclient.load(str(self.kubeconfig)))
        return self._api

    def status(self) -> dict[str, Any]:
        """The daemon's ``daemon.json`` (pids, addresses), or {} if it is not running."""
        try:
            return json.loads((self.state_dir / "daemon.json").read_text())
        except (OSError, ValueError):
            return {}

    # ---- life cycle ----

    def start(self, timeout: float = 60.0) -> None:
        """Spawn the daemon and wait for its ``daemon.json`` to say ready."""
        assert self.pid is None, "daemon already running"
        self.base.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "daemon.json").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "k3c.cli.main", "daemon", "--root-dir", str(self.root_dir),
               "--state-dir", str(self.state_dir), "--listen", f"127.0.0.1:{self.port}",
               "--bridge", self.bridge, "--subnet", self.subnet, "--network-name", self.network_name,
               "--node-name", "k3c-test-node", "--log-level", os.environ.get("K3C_TEST_LOG_LEVEL", "info"),
               *self.extra_args]
        if "--node-runtime-address" not in self.extra_args:
            # A kubelet is seen host-wide, and test_noderuntime plays one beside parallel tests: found by
            # auto-detection, its containerd (gone with that test) would get this daemon's images.
            cmd += ["--node-runtime-address", "none"]
        self._spawn(cmd, None, "daemon", timeout)

    def _spawn(self, argv: list[str], env: dict[str, str] | None, what: str, timeout: float) -> None:
        """Run ``argv`` (the daemon, or an agent) logging to :attr:`log_path`, wait until its ``daemon.json``
        says ready (stopped and RuntimeError with the log's tail if it exits or is late), then note the pids
        it started for the clean-up."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        self.started_pids.add(self.proc.pid)
        deadline = time.monotonic() + timeout
        while not self.status().get("ready"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"k3c {what} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"k3c {what} not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)
        st = self.status()
        self.started_pids.update(p for p in (st.get("containerdPid"), st.get("operatorPid")) if p)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the daemon (by PID) and wait; returns its exit status. Containers keep running."""
        proc, self.proc = self.proc, None
        if self._api is not None:
            self._api.close()
        if proc is None:
            return None
        children = self._children()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._reap(children)
        return proc.returncode

    def kill9(self) -> None:
        """SIGKILL the daemon (by PID); its containerd and operator follow (parent-death signal)."""
        proc, self.proc = self.proc, None
        if self._api is not None:
            self._api.close()
        assert proc is not None and proc.poll() is None, "daemon not running"
        children = self._children()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self._reap(children)

    def _children(self) -> list[int]:
        st = self.status()
        return [p for p in (st.get("containerdPid"), st.get("operatorPid")) if p]

    def _reap(self, pids: list[int], timeout: float = 15.0) -> None:
        """Wait for the daemon's children to be gone; SIGKILL (by PID) any that outstay ``timeout``."""
        deadline = time.monotonic() + timeout
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                kill_deadline = time.monotonic() + 10  # (a SIGKILLed process still takes a moment to go)
                while _alive(pid) and time.monotonic() < kill_deadline:
                    time.sleep(0.02)

    def log_tail(self, n: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        op = self.state_dir / "operator.log"
        if op.exists():
            text += "\n--- operator.log ---\n" + op.read_text(errors="replace")[-n:]
        return text[-2 * n:]

    # ---- images ----

    def import_image(self, name: str, image: OCIImage, timeout: float = 20.0) -> str:
        """Import ``image`` into the daemon's containerd as ``name``; returns the image id once CRI sees it."""
        from k3c.cri.imagestore import ContainerdImages
        from k3c.cri.runtime import CRIClient, wait_for_image

        async def run() -> str:
            async with ContainerdImages(self.containerd_address) as store, CRIClient(self.containerd_address) as cri:
                await store.import_image(name, image)
                return await wait_for_image(cri, name, image.id, timeout)

        return asyncio.run(run())

    def wait_image_object(self, name: str, timeout: float = 90.0) -> None:
        """Wait until the operator's Image object for ``name`` is Ready: it follows an import a moment later,
        from containerd's events, and the Docker API's create looks images up there."""
        from k3c.api import IMAGES
        from k3c.oci.reference import normalize

        want = normalize(name)

        def ready() -> bool:
            return any((o.get("spec") or {}).get("reference") in (name, want)
                       and (o.get("status") or {}).get("phase") == "Ready"
                       for o in self.api.get(IMAGES.path()).get("items", []))

        wait_until(ready, timeout, f"the Image object of {name} to be Ready")

    # ---- inspection ----

    def netns(self) -> list[str]:
        d = self.containerd_config.netns_dir
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def leases(self) -> list[str]:
        return [p.name for p in leased_ips(self.containerd_config)]

    def shims(self) -> list[int]:
        return find_shim_pids(self.containerd_config.socket_path)

    def cri(self, coro_fn: Callable[[Any], Any]) -> Any:
        """Run ``coro_fn(cri_client)`` against the daemon's containerd, e.g. ``d.cri(lambda c: c.list_pod_sandbox())``.

        A connection or call containerd leaves unanswered (a loaded CI machine once took longer than gRPC's
        connect timeout) is tried again for a few seconds, as the operator's clean-ups do."""
        from k3c.cri.restarts import while_unavailable
        from k3c.cri.runtime import CRIClient

        async def once() -> Any:
            async with CRIClient(self.containerd_address) as cri:
                return await coro_fn(cri)

        return asyncio.run(while_unavailable(once, patience=10.0))

    # ---- LocalContainers ----

    def create_container(self, name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
        return self.api.create(LOCAL_CONTAINERS.path(namespace), lc_object(name, namespace, **spec))

    def container(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        try:
            return self.api.get(LOCAL_CONTAINERS.path(namespace, name))
        except NotFound:
            return None

    def wait_container(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
                       what: str = "", namespace: str = "default") -> dict[str, Any]:
        """Poll the object until ``predicate(obj)``; the assertion message shows its last status."""
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            nonlocal last
            obj = self.container(name, namespace)
            last = obj or {}
            return obj if obj is not None and predicate(obj) else None

        try:
            return wait_until(check, timeout, what or f"container {name}")
        except AssertionError as err:
            raise AssertionError(f"{err}; last status: {last.get('status')}") from None

    def wait_phase(self, name: str, *phases: str, timeout: float = 30.0, namespace: str = "default") -> dict[str, Any]:
        return self.wait_container(name, lambda o: (o.get("status") or {}).get("phase") in phases, timeout,
                                   f"{name} to be {'/'.join(phases)}", namespace)

    def delete_container(self, name: str, namespace: str = "default", wait: bool = True,
                         timeout: float = 30.0) -> None:
        with contextlib.suppress(APIError):
            self.api.delete(LOCAL_CONTAINERS.path(namespace, name))
        if wait:
            wait_until(lambda: self.container(name, namespace) is None, timeout, f"{name} to be deleted")

    def container_log(self, obj: dict[str, Any]) -> list[tuple[str, str]]:
        return read_log(obj["status"]["logPath"])

    def exec(self, container_id: str, cmd: list[str], timeout: int = 10) -> tuple[int, str, str]:
        """ExecSync in a container: (exit code, stdout, stderr)."""
        resp = self.cri(lambda c: c.exec_sync(container_id, cmd, timeout=timeout))
        return resp.exit_code, resp.stdout.decode(errors="replace"), resp.stderr.decode(errors="replace")

    def runtime_containers(self, uid: str | None = None) -> list[Any]:
        """CRI containers this daemon's k3c made (of one object if ``uid``)."""
        from k3c.cri.runtime import pb

        labels = {CRI_MANAGED_LABEL: "true"}
        if uid:
            labels[CRI_UID_LABEL] = uid
        return self.cri(lambda c: c.list_containers(pb.ContainerFilter(label_selector=labels)))

    def runtime_sandboxes(self, uid: str | None = None) -> list[Any]:
        """CRI sandboxes of k3c (of one object if ``uid``; the pool's spares have no uid)."""
        from k3c.cri.runtime import pb

        labels = {CRI_MANAGED_LABEL: "true"}
        if uid:
            labels[CRI_UID_LABEL] = uid
        return self.cri(lambda c: c.list_pod_sandbox(pb.PodSandboxFilter(label_selector=labels)))

    # ---- teardown ----

    def delete_all(self, timeout: float = 90.0) -> None:
        """Delete every LocalContainer and Volume (forced) and wait until they are gone."""
        api = self.api
        for obj in api.get(LOCAL_CONTAINERS.path()).get("items", []):
            meta = obj["metadata"]
            with contextlib.suppress(APIError):
                api.merge_patch(LOCAL_CONTAINERS.path(meta["namespace"], meta["name"]), {"spec": {"stopTimeout": 0}})
                api.delete(LOCAL_CONTAINERS.path(meta["namespace"], meta["name"]))
        wait_until(lambda: not api.get(LOCAL_CONTAINERS.path()).get("items"), timeout,
                   "all LocalContainers to be deleted")
        for obj in api.get(VOLUMES.path()).get("items", []):
            meta = obj["metadata"]
            path = VOLUMES.path(meta["namespace"], meta["name"])
            with contextlib.suppress(APIError):
                api.merge_patch(path, {"metadata": {"annotations": {FORCE_DELETE_ANNOTATION: "true"}}})
                api.delete(path)
        wait_until(lambda: not api.get(VOLUMES.path()).get("items"), timeout, "all Volumes to be deleted")
        self._delete_user_networks(timeout)

    def _delete_user_networks(self, timeout: float) -> None:
        """Every Network but the node's own ``bridge`` (never removed), waiting until they are gone."""
        api = self.api

        def user_networks() -> list[dict[str, Any]]:
            try:
                items = api.get(NETWORKS.path()).get("items", [])
            except APIError:  # a server without the Network kind
                return []
            return [o for o in items if o["metadata"]["name"] != "bridge"]

        for obj in user_networks():
            with contextlib.suppress(APIError):
                api.delete(NETWORKS.path(obj["metadata"]["namespace"], obj["metadata"]["name"]))
        wait_until(lambda: not user_networks(), timeout, "all user Networks to be deleted")

    def leftovers(self, grace: float = 5.0) -> list[str]:
        """What a stopped daemon with no objects should not have left (:func:`leftovers.host_leftovers`
        with nothing live), and processes it started that still run.

        A shim exits on its own a moment after its sandbox was removed, and a process the daemon was
        stopping a moment after it: ``grace`` seconds are allowed.
        """
        deadline = time.monotonic() + grace
        while (self.shims() or any(_alive(p) for p in self.started_pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        found = leftovers.host_leftovers(self.node, None)
        found += [f"process {p} still running" for p in sorted(self.started_pids) if _alive(p)]
        return found

    def running_leftovers(self) -> list[str]:
        """What the running daemon holds that neither containerd's live state nor an existing object
        accounts for, and k3c does not keep on purpose (:data:`leftovers.KEPT`)."""
        uids = {o["metadata"]["uid"] for o in self.api.get(LOCAL_CONTAINERS.path()).get("items", [])}
        return leftovers.leftovers(self.node, leftovers.live_state(self.node, uids, self.pool_size))

    def wait_no_leftovers(self, timeout: float = 45.0) -> None:
        """Wait until :meth:`running_leftovers` is empty (removals in flight finish); fail naming them."""
        last: list[str] = []

        def clean() -> bool:
            nonlocal last
            last = self.running_leftovers()
            return not last

        try:
            wait_until(clean, timeout, "no leftovers", interval=0.5)
        except AssertionError:
            raise AssertionError(f"k3c daemon left behind: {leftovers.summary(last)}") from None

    def close(self) -> list[str]:
        """Delete all objects, stop, report leftovers, then remove them and every trace of this daemon."""
        problems: list[str] = []
        if self.pid is not None:
            try:
                self.delete_all()
            except Exception as err:  # report, and clean up regardless
                problems.append(f"deleting objects failed: {err}")
            self.stop()
        problems += self.leftovers()
        self.clean()
        return problems

    def clean(self) -> None:
        """Remove everything this daemon may have left, identified by its socket, paths, bridge and subnet.

        Containers go through runc (their processes and cgroups), then the shims with whatever still runs
        under them: a shim killed alone leaves its children running under init.
        """
        runc_root = self.containerd_config.runc_root
        for ns in runc_root.iterdir() if runc_root.is_dir() else []:
            for state in ns.iterdir():
                subprocess.run(["runc", "--root", str(ns), "delete", "--force", state.name], capture_output=True)
        for shim in leftovers.shims(self.node):
            with contextlib.suppress(psutil.Error):
                for proc in [*shim.children(recursive=True), shim]:
                    proc.kill()
        for pid in self.started_pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        cleanup_network(self.containerd_config)
        _unmount_under(self.base)
        self._keep_logs()
        shutil.rmtree(self.base, ignore_errors=True)

    def _keep_logs(self) -> None:
        """Daemon and operator logs survive the clean-up, beside the base dir, for post-mortems."""
        keep = self.base.parent / f"{self.base.name}-logs"
        for log in (self.log_path, self.state_dir / "operator.log", self.state_dir / "containerd" / "containerd.log"):
            if log.exists():
                keep.mkdir(exist_ok=True)
                with contextlib.suppress(OSError):
                    shutil.copy(log, keep / log.name)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _unmount_under(base: Path) -> None:
    prefix = str(base) + "/"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
