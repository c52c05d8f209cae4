"""`k3c daemon`: one process tree that runs everything a node needs, and winds it down cleanly.

In start-up order:

1. containerd as a supervised child with k3c's generated config (unless ``--containerd-address`` names
   an existing one), restarted if it dies: containers survive that (their shims are not its children);
2. k3c's locally built pause image, imported so sandboxes never need a registry;
3. the embedded API server in this very event loop (unless ``--kubeconfig`` names an existing cluster),
   its admin kubeconfig at ``<root-dir>/kubeconfig.yaml``, plus the streaming subresources
   (container logs/exec/attach, image save/load, build logs/context);
4. the CRDs from :mod:`k3c.crds`, created or replaced;
5. the operator (``python -m k3c.operator``, kopf) as a supervised child, restarted with back-off;
6. the front ends the caller plugs in (:class:`Frontend`: the Docker API socket), once all of the above is up.

Then it writes ``<state-dir>/daemon.json`` (pids, addresses, ``ready``) for tools and tests. On SIGTERM or
SIGINT it stops the operator, the API server and containerd in that order; running containers keep running
and the next start re-adopts them. Children get a parent-death signal so even ``kill -9`` of the daemon
leaves no orphan runtime or operator behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import grp
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from k3c import api
from k3c.apierrors import AlreadyExists, APIError, NotFound
from k3c.apiserver.eventttl import DEFAULT_TTL
from k3c.daemon.containerd import ContainerdConfig, ContainerdProcess, with_parent_death_signal
from k3c.daemon.hostcontainerd import HostContainerd
from k3c.daemon.process import terminate
from k3c.daemon.sweeper import SWEEP_INTERVAL, Sweeper

log = logging.getLogger("k3c.daemon")

DEFAULT_ROOT_DIR = Path(api.DEFAULT_ROOT_DIR)
DEFAULT_STATE_DIR = Path("/run/k3c")
STATUS_FILE = "daemon.json"
#: seconds the operator gets to stop before SIGKILL: it finishes the sandbox removals still in flight (a
#: stop right after `rm -f` of hundreds; k3c.reconcilers.sandboxes.CLOSE_PATIENCE)
OPERATOR_STOP_TIMEOUT = 50.0


class Frontend(Protocol):
    """Something more the daemon serves once the API server and operator are up (the Docker API socket).

    The daemon only starts and stops it: what it serves sits in a layer above and talks to the API server,
    so `k3c daemon` (the CLI) builds it and hands it in."""

    name: str  #: its key in daemon.json's ``frontends``

    @property
    def address(self) -> str:
        """Where clients reach it, e.g. ``unix:///run/k3c/docker.sock``."""

    async def start(self, store_revision: Callable[[], int] | None = None) -> bool:
        """Start serving; False when it chose not to (it is then neither announced nor stopped).

        ``store_revision``: the embedded API server's current revision, when it runs in this process (None
        on a cluster), which a LIST would answer as its resourceVersion: a front end that only asks it to
        tell whether anything changed may read it here instead of making a request."""

    async def stop(self) -> None: ...


class DaemonError(RuntimeError):
    """A start-up failure with a one-line message (the CLI prints it and exits 125)."""


@dataclass
class DaemonConfig:
    """Everything `k3c daemon` is told; see :mod:`k3c.cli.daemon` for the flags."""

    root_dir: Path = DEFAULT_ROOT_DIR
    state_dir: Path = DEFAULT_STATE_DIR
    listen_host: str = "127.0.0.1"
    listen_port: int = 6443
    kubeconfig: Path | None = None
    containerd_address: str | None = None
    group: int | None = None
    node_name: str = field(default_factory=socket.gethostname)
    bridge: str = "k3c0"
    subnet: str = "10.88.0.0/16"
    network_name: str = "k3c"
    pool_size: int = 1
    log_level: str = "info"
    event_ttl: float = DEFAULT_TTL  #: the embedded API server's --event-ttl, in seconds
    #: the node policy the operator's admission webhook enforces (see k3c.reconcilers.nodepolicy)
    node_policy: str = "permissive"
    node_policy_allow: list[str] = field(default_factory=list)
    node_policy_host_paths: list[str] = field(default_factory=list)
    credentials_namespace: str = "kube-system"
    #: use ``containerd_address`` even when a kubelet uses that containerd (see k3c.daemon.noderuntime)
    force_containerd_address: bool = False
    #: the node's Kubernetes runtime to share images into: a containerd socket, "auto" (the one a kubelet on
    #: this host uses, if any: k3c.daemon.noderuntime) or "none"
    node_runtime: str = "auto"
    #: the operator runs the resolvers of the node's DNS-enabled networks (k3c.netdns)
    dns: bool = True
    operator_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root_dir = Path(self.root_dir).absolute()
        self.state_dir = Path(self.state_dir).absolute()
        if self.kubeconfig is not None:
            self.kubeconfig = Path(self.kubeconfig).absolute()

    @property
    def kubeconfig_path(self) -> Path:
        return self.kubeconfig or self.root_dir / api.KUBECONFIG_FILE

    @property
    def containerd(self) -> ContainerdConfig:
        return ContainerdConfig(
            root_dir=self.root_dir / "containerd",
            state_dir=self.state_dir / "containerd",
            socket_gid=self.group or 0,
            bridge=self.bridge,
            subnet=self.subnet,
            network_name=self.network_name,
        )

    @property
    def containerd_socket(self) -> str:
        return self.containerd_address or str(self.containerd.socket_path)

    @property
    def status_path(self) -> Path:
        return self.state_dir / STATUS_FILE


def resolve_group(value: str) -> int:
    """``--group`` as a gid: a number, or a group name looked up in /etc/group."""
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise DaemonError(f"unknown group {value!r}") from None


# ------------------------------------------------------------------------------------------ children

#: Runs the ``k3c.operator`` module from an editable checkout too: there operator/ is a namespace portion (no
#: ``__init__.py``, so it never shadows the stdlib's ``operator``), which setuptools' editable finder cannot
#: resolve under the regular package ``k3c``; adding the checkout root to ``k3c.__path__`` lets the normal
#: import system find it as ``k3c.operator``.
_OPERATOR_BOOTSTRAP = (
    "import pathlib, runpy, sys, k3c\n"
    "root = str(pathlib.Path(k3c.__file__).resolve().parent.parent)\n"
    "if pathlib.Path(root, 'operator', '__main__.py').exists() and root not in k3c.__path__:\n"
    "    k3c.__path__.append(root)\n"
    "sys.argv[0] = {module!r}\n"
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
)


def operator_command(module: str = "k3c.operator") -> list[str]:
    """argv prefix that runs ``module`` (the operator; its flags follow): ``python -m`` when importable
    as installed, else through the bootstrap."""
    import importlib.util

    try:
        found = importlib.util.find_spec("k3c.operator.__main__") is not None
    except ModuleNotFoundError:
        found = False
    # -P: never put the working directory first on sys.path, where a checkout's k3c/ would shadow the
    # installed package.
    if found:
        return [sys.executable, "-P", "-m", module]
    return [sys.executable, "-P", "-c", _OPERATOR_BOOTSTRAP.format(module=module)]



@dataclass
class Child:
    """A supervised child process started by argv, restarted with exponential back-off when it dies."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _next_start: float = 0.0
    _started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                with_parent_death_signal(self.argv), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True, close_fds=True, cwd="/",
            )
        self._started_at = time.monotonic()
        log.info("%s started (pid %d)", self.name, self.proc.pid)

    def check(self) -> None:
        """Restart the child if it died: 1 s back-off doubling to 30 s, reset after a minute of uptime."""
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self._next_start == 0.0:
            uptime = now - self._started_at
            self.restarts = 0 if uptime > 60 else self.restarts + 1
            delay = min(30.0, 2.0 ** max(0, self.restarts - 1)) if self.restarts else 0.5
            log.error("%s exited with %s; restarting in %.1f s", self.name, self.proc.returncode, delay)
            self._next_start = now + delay
        if now >= self._next_start:
            self._next_start = 0.0
            self.start()

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; only ever this child's own PID."""
        proc, self.proc = self.proc, None
        if proc is not None:
            await terminate(proc, timeout, self.name)


# ------------------------------------------------------------------------------------------ daemon


class Daemon:
    """The running daemon: start everything, supervise, stop everything (see the module docstring)."""

    def __init__(self, config: DaemonConfig, frontends: list[Frontend] | None = None) -> None:
        self.config = config
        self.frontends = list(frontends or [])
        self._started: list[Frontend] = []
        self.containerd: ContainerdProcess | HostContainerd | None = None
        self.sweeper: Sweeper | None = None  #: what crashes left, for our own containerd only
        self.apiserver: Any = None
        self.operator: Child | None = None
        self.init_binary: Path | None = None  #: `k3c run --init`'s init, compiled at start
        self._stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.start()
            print(f"k3c daemon ready: kubeconfig {self.config.kubeconfig_path}, "
                  f"containerd {self.config.containerd_socket}", flush=True)
            await self._supervise()
        finally:
            await self.stop()

    async def start(self) -> None:
        cfg = self.config
        self._prepare_dirs()
        if cfg.containerd_address is None:
            await self._start_containerd()
        else:
            await self._check_containerd_address()
        await self._ensure_pause()
        if cfg.kubeconfig is None:
            await self._start_apiserver()
        elif not cfg.kubeconfig.exists():
            raise DaemonError(f"kubeconfig {cfg.kubeconfig} not found")
        await asyncio.to_thread(install_crds, cfg.kubeconfig_path)
        if cfg.containerd_address is None:  # our containerd: its default network is the node's bridge
            await asyncio.to_thread(ensure_default_network, cfg.kubeconfig_path, cfg.node_name)
        await self._start_operator()
        await self._start_frontends()
        self._write_status(ready=True)

    async def _start_operator(self) -> None:
        cfg = self.config
        self.operator = Child("operator", self._operator_argv(), cfg.state_dir / "operator.log")
        ready = cfg.state_dir / "operator.ready"
        ready.unlink(missing_ok=True)
        self.operator.start()
        await self._wait_operator_ready(ready)

    async def _start_frontends(self) -> None:
        """The extra front doors (the Docker API socket), once the operator can act on what they write."""
        server = self.apiserver
        store_revision = (lambda: int(server.store.revision)) if server is not None else None
        for frontend in self.frontends:
            try:
                if await frontend.start(store_revision):
                    self._started.append(frontend)
            except OSError as err:
                await frontend.stop()
                raise DaemonError(f"cannot serve the {frontend.name} front end on {frontend.address}: "
                                  f"{err.strerror or err}") from None

    def _prepare_dirs(self) -> None:
        cfg = self.config
        for d in (cfg.root_dir, cfg.state_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o750 if cfg.group is not None else 0o700)
            if cfg.group is not None:
                os.chown(d, -1, cfg.group)
        for sub in (api.CONTAINER_LOGS_DIR, "volumes", "cache"):
            (cfg.root_dir / sub).mkdir(exist_ok=True)

    async def _start_containerd(self) -> None:
        from k3c.daemon.containerd import ContainerdStartError

        self.containerd = self._new_containerd()
        self.sweeper = Sweeper(self.config.containerd)
        since = time.time()
        try:
            adopted = await self.containerd.start() is True
        except ContainerdStartError as err:
            first, _, tail = str(err).partition("\n")
            log.error("containerd log tail:\n%s", tail)
            raise DaemonError(first) from None
        log.info("containerd running (pid %s) on %s", self.containerd.pid, self.config.containerd_socket)
        await self.sweeper.after_start(since, fresh=not adopted)

    def _new_containerd(self) -> ContainerdProcess | HostContainerd:
        """Our containerd: a child that dies with the daemon (the agent's outlives it)."""
        return ContainerdProcess(self.config.containerd, die_with_parent=True)

    async def _check_containerd_address(self) -> None:
        """Refuse a kubelet's containerd unless forced: the kubelet would remove k3c's sandboxes."""
        from k3c.daemon.noderuntime import kubelet_use

        address = self.config.containerd_address
        if address is None or self.config.force_containerd_address:
            return
        if why := await kubelet_use(address):
            raise DaemonError(f"refusing --containerd-address {address}: {why}, and a kubelet removes the Pod "
                              "sandboxes it does not know (--force-containerd-address to use it anyway)")

    async def _restart_containerd(self) -> None:
        assert self.containerd is not None and self.sweeper is not None
        since = time.time()
        await self.containerd.start()
        await self.sweeper.after_start(since, fresh=False)

    async def _ensure_pause(self) -> None:
        from k3c.daemon.pause import compile_init, ensure_pause_image

        try:
            await ensure_pause_image(self.config.containerd_socket, self.config.root_dir / "cache")
            self.init_binary = await asyncio.to_thread(compile_init, self.config.root_dir / "cache")
        except (OSError, RuntimeError) as err:
            raise DaemonError(f"cannot prepare the pause image: {str(err).splitlines()[0]}") from None

    async def _start_apiserver(self) -> None:
        from k3c.apiserver.encryption import EncryptionConfigError
        from k3c.apiserver.server import APIServer, ServerConfig

        cfg = self.config
        try:
            server = APIServer(ServerConfig(data_dir=cfg.root_dir, host=cfg.listen_host, port=cfg.listen_port,
                                            kubeconfig_gid=cfg.group, event_ttl=cfg.event_ttl))
        except EncryptionConfigError as err:
            raise DaemonError(str(err)) from None
        self._mount_subresources(server)
        try:
            await server.start()
        except OSError as err:
            reason = os.strerror(err.errno).lower() if err.errno else str(err)
            raise DaemonError(f"cannot listen on {cfg.listen_host}:{cfg.listen_port}: {reason}") from None
        self.apiserver = server

    def _mount_subresources(self, server: Any) -> None:
        """The subresources the embedded server adds to plain Kubernetes: container logs/exec/attach,
        pause/unpause/kill/top/stats/archive/changes/export and commit, image save/load, build logs and context
        uploads (each service a provider of :mod:`k3c.apiserver.subresources`)."""
        for provider in self._providers():
            server.handler.mount(provider)

    def _providers(self, node: str = "") -> list[Any]:
        """The streaming services of this node, each a subresource provider (the agent serves them too;
        ``node``: this node's name, for answers that must say where they were served)."""
        from k3c.archives.subresource import ArchiveEndpoints
        from k3c.builder.commit import ContainerCommits
        from k3c.builder.logs import BuildSubresources
        from k3c.builder.paths import BuildPaths
        from k3c.streams.nodeops import ContainerOperations
        from k3c.streams.server import StreamService

        sock = self.config.containerd_socket
        return [StreamService(sock, sock, log_dir=self.config.root_dir / api.CONTAINER_LOGS_DIR),
                ContainerOperations(sock, sock), ContainerCommits(sock),
                ArchiveEndpoints(sock, self.runtime_address), BuildSubresources(BuildPaths(self.config.root_dir), node)]

    @functools.cached_property
    def runtime_address(self) -> str | None:
        """The node runtime's containerd socket, which images are shared into; None for none (or ourselves)."""
        from k3c.daemon.noderuntime import node_runtime, socket_path

        wanted = self.config.node_runtime
        found = None if wanted == "none" else node_runtime() if wanted == "auto" else socket_path(wanted)
        if found is None or found == socket_path(self.config.containerd_socket):
            return None
        log.info("images are shared with the node runtime's containerd at %s", found)
        return found

    def _operator_argv(self) -> list[str]:
        cfg = self.config
        return [
            *operator_command(),
            "--kubeconfig", str(cfg.kubeconfig_path),
            "--containerd-address", cfg.containerd_socket,
            "--node-name", cfg.node_name,
            "--root-dir", str(cfg.root_dir),
            "--ready-file", str(cfg.state_dir / "operator.ready"),
            "--pool-size", str(cfg.pool_size),
            "--log-level", cfg.log_level,
            *self._containerd_dirs(),
            # embedded mode: whoever reaches the API is trusted as with docker.sock (context.dir too)
            *(["--allow-local-git-contexts"] if cfg.kubeconfig is None else []),
            # joining another API server, shared with other nodes: each registers its own admission webhooks,
            # and this node's images are objects of its own (other nodes may hold the same references)
            *(["--webhooks-per-node", "--images-per-node"] if cfg.kubeconfig is not None else []),
            *self._node_policy_args(),
            *(["--init-binary", str(self.init_binary)] if self.init_binary else []),
            *(["--node-runtime-address", self.runtime_address] if self.runtime_address else []),
            *([] if cfg.dns else ["--no-dns"]),
            *cfg.operator_args,
        ]

    def _node_policy_args(self) -> list[str]:
        cfg = self.config
        args = ["--node-policy", cfg.node_policy, "--credentials-namespace", cfg.credentials_namespace]
        for allowed in cfg.node_policy_allow:
            args += ["--node-policy-allow", allowed]
        for path in cfg.node_policy_host_paths:
            args += ["--node-policy-host-path", path]
        return args

    def _containerd_dirs(self) -> list[str]:
        """Our own containerd's dirs, so the operator may scrub and reuse sandboxes (not someone else's)."""
        if self.config.containerd_address is not None:
            return []
        ctd = self.config.containerd
        return ["--containerd-root", str(ctd.root_dir), "--containerd-state", str(ctd.state_dir)]

    async def _wait_operator_ready(self, ready: Path, timeout: float = 60.0) -> None:
        assert self.operator is not None
        deadline = time.monotonic() + timeout
        while not ready.exists():
            proc = self.operator.proc
            if proc is not None and proc.poll() is not None:
                raise DaemonError(f"the operator exited with {proc.returncode} during start-up "
                                  f"(see {self.operator.log_path})")
            if self._stop.is_set():
                raise DaemonError("stopped during start-up")
            if time.monotonic() > deadline:
                raise DaemonError(f"the operator did not become ready within {timeout:.0f} s "
                                  f"(see {self.operator.log_path})")
            await asyncio.sleep(0.02)

    def _write_status(self, ready: bool) -> None:
        cfg = self.config
        doc = {
            "pid": os.getpid(),
            "ready": ready,
            "node": cfg.node_name,
            "kubeconfig": str(cfg.kubeconfig_path),
            "containerdAddress": cfg.containerd_socket,
            "containerdPid": self.containerd.pid if self.containerd else None,
            "operatorPid": self.operator.pid if self.operator else None,
            "apiServer": self.apiserver.config.url if self.apiserver else None,
            "frontends": {f.name: f.address for f in self._started},
        }
        tmp = cfg.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, cfg.status_path)

    async def _supervise(self) -> None:
        """Restart containerd or the operator if either dies, and sweep what crashes left, until a stop
        signal arrives."""
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)
            if self._stop.is_set():
                break
            changed = False
            if self.containerd is not None and self.containerd.pid is None:
                log.error("containerd died; restarting it")
                try:
                    await self._restart_containerd()
                    changed = True
                except Exception as err:
                    log.error("restarting containerd failed: %s", str(err).splitlines()[0])
            if self.operator is not None:
                before = self.operator.pid
                self.operator.check()
                changed |= self.operator.pid != before
            if changed:
                self._write_status(ready=True)
            if self.sweeper is not None and time.monotonic() >= next_sweep:
                await self.sweeper.periodic()
                next_sweep = time.monotonic() + SWEEP_INTERVAL

    async def stop(self) -> None:
        """Front ends first (they need the API server), then the operator (it still needs the API and
        containerd to wind down), then API server, containerd."""
        self.config.status_path.unlink(missing_ok=True)
        while self._started:
            await self._started.pop().stop()
        if self.operator is not None:
            await self.operator.stop(timeout=OPERATOR_STOP_TIMEOUT)
            self.operator = None
        if self.apiserver is not None:
            await self.apiserver.stop()
            self.apiserver = None
        if self.containerd is not None:
            await self._let_shims_finish()
            await self.containerd.stop()
            self.containerd = None
        log.info("k3c daemon stopped")

    async def _let_shims_finish(self, timeout: float = 3.0) -> None:
        """A sandbox removed just before the stop still has its shim winding down, and the shim needs
        containerd to finish: wait (briefly) until no more shims run than sandboxes exist."""
        from k3c.cri.runtime import CRIClient
        from k3c.daemon.containerd import find_shim_pids

        try:
            async with CRIClient(self.config.containerd_socket, timeout=2.0) as cri:
                sandboxes = len(await cri.list_pod_sandbox())
        except Exception as err:  # a best effort before stopping
            log.debug("cannot list sandboxes before stopping containerd: %s", err)
            return
        socket_path = self.config.containerd.socket_path
        deadline = time.monotonic() + timeout
        while len(find_shim_pids(socket_path)) > sandboxes and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pid in find_shim_pids(socket_path):
            # A shim with no process under it serves no container any more (its sandbox is gone) but would
            # wait for our containerd forever: end it. Shims of running containers always have children.
            if not _children(pid):
                log.info("ending idle shim %d of a removed sandbox", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


# ------------------------------------------------------------------------------------------ CRDs


def install_crds(kubeconfig: Path, timeout: float = 30.0) -> None:
    """Create each CRD of :mod:`k3c.crds`, or replace it when it differs, then wait until it is served."""
    import yaml

    from k3c import kubeclient
    from k3c.crds import manifests

    client = kubeclient.Client(kubeclient.load(str(kubeconfig)))
    base = api.CUSTOM_RESOURCE_DEFINITIONS.path()
    crds = []
    for path in manifests():
        try:
            crds.append(yaml.safe_load(path.read_text()))
        except yaml.YAMLError as err:  # one broken manifest must not keep the node down
            log.error("skipping CRD manifest %s: %s", path.name, str(err).replace("\n", " "))
    try:
        for crd in crds:
            _apply_crd(client, base, crd)
        for crd in crds:
            _wait_established(client, f"{base}/{crd['metadata']['name']}", timeout)
    except APIError as err:
        raise DaemonError(f"cannot install the CRDs: {err.message}") from None
    except OSError as err:
        raise DaemonError(f"cannot reach the API server to install the CRDs: {err}") from None
    finally:
        client.close()


def ensure_default_network(kubeconfig: Path, node: str, namespace: str = "default") -> None:
    """The Network ``bridge`` (docker's default network, the node's own bridge), made if missing: the
    operator reports it, containers without networks are on it."""
    from k3c import kubeclient

    client = kubeclient.Client(kubeclient.load(str(kubeconfig)))
    try:
        _ensure_network(client, namespace, {
            "apiVersion": api.NETWORKS.api_version, "kind": api.NETWORKS.kind,
            "metadata": {"name": api.DEFAULT_NETWORK, "namespace": namespace},
            "spec": {"driver": "bridge", "nodeName": node}})
    finally:
        client.close()


def _ensure_network(client: Any, namespace: str, obj: dict[str, Any]) -> None:
    # Read first: on a restart it is there, and a create would go through admission, whose webhook (the
    # operator, not started yet) is down until the operator registers it again.
    try:
        client.get(api.NETWORKS.path(namespace, api.DEFAULT_NETWORK))
        return
    except NotFound:
        pass
    except APIError as err:
        raise DaemonError(f"cannot read the default network: {err.message}") from None
    try:
        client.create(api.NETWORKS.path(namespace), obj)
        log.info("created the default network %s", api.DEFAULT_NETWORK)
    except AlreadyExists:
        pass
    except APIError as err:
        raise DaemonError(f"cannot create the default network: {err.message}") from None


def _apply_crd(client: Any, base: str, crd: dict[str, Any]) -> None:
    name = crd["metadata"]["name"]
    try:
        live = client.get(f"{base}/{name}")
    except NotFound:
        client.create(base, crd)
        log.info("created CRD %s", name)
        return
    if live.get("spec") == {**live.get("spec", {}), **crd["spec"]}:
        return
    crd = {**crd, "metadata": {**crd["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
    client.request("PUT", f"{base}/{name}", crd)
    log.info("updated CRD %s", name)


def _wait_established(client: Any, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        crd = client.get(path)
        conds = {c.get("type"): c.get("status") for c in crd.get("status", {}).get("conditions", [])}
        if conds.get("Established") == "True":
            return
        if time.monotonic() > deadline:
            raise DaemonError(f"CRD {crd['metadata']['name']} not established within {timeout:.0f} s")
        time.sleep(0.1)


def _children(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []
