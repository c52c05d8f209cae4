"""Assembling and running the API server: storage, registry, handlers, TLS and authentication.

`APIServer` is what `k3c apiserver` runs in the foreground and what `k3c daemon` embeds in its own event
loop. Every request over TCP must authenticate (:mod:`k3c.apiserver.filters`): with a client certificate
k3c's CA signed (the admin's, or a user's), the admin bearer token or a ServiceAccount token; anything else
gets a 401 Status. The admin (``system:masters``) may do anything; everyone else what RBAC grants.

The same API is also served as plain HTTP on a unix socket in the data directory (``k3c.sock``, beside the
kubeconfig), for the local k3c CLI: like docker.sock, its file mode is its access control (0600, or 0660
for the kubeconfig's group, the very users who can read the admin kubeconfig anyway), and it spares every
command a TLS handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from k3c import api
from k3c.apiserver import (
    authconfigmap,
    certs,
    controlloop,
    crds,
    encryption,
    kubeconfig,
    lifecycle,
    rbacbootstrap,
)
from k3c.apiserver.admission import Admission
from k3c.apiserver.aggregator import Aggregator
from k3c.apiserver.authn import Authenticator
from k3c.apiserver.backends import Backends
from k3c.apiserver.clusterroleaggregation import ClusterRoleAggregation
from k3c.apiserver.eventttl import DEFAULT_TTL, expire_events
from k3c.apiserver.filters import AccessFilter
from k3c.apiserver.handlers import APIHandler, Settings
from k3c.apiserver.rbac import RBACAuthorizer
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.rest import ResourceAPI
from k3c.apiserver.reviews import Reviews
from k3c.apiserver.satokens import Signer
from k3c.apiserver.serviceaccounts import TokenAuthenticator, TokenRequests, TokenSecrets
from k3c.apiserver.services import EndpointsServices, ServiceResolver
from k3c.apiserver.storage import Store
from k3c.apiserver.watch import WatchHub

log = logging.getLogger(__name__)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
#: sun_path holds 108 bytes with the terminating NUL; leave room.
MAX_UNIX_PATH = 100


@dataclass
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    retain_revisions: int = 20000
    compact_interval: float = 300.0
    bookmark_interval: float = 60.0
    event_ttl: float = DEFAULT_TTL  #: kube-apiserver's --event-ttl
    kubeconfig_gid: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


class APIServer:
    def __init__(self, config: ServerConfig, services: ServiceResolver | None = None):
        """``services``: how a Service named by a webhook or an APIService is reached (by default through its
        Endpoints in this server's storage; tests map Services to local addresses)."""
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = Store(config.data_dir / "state.db", retain=config.retain_revisions,
                           transformer=encryption.load_or_create(config.data_dir))
        self.registry = ResourceTypes()
        services = services or EndpointsServices(self._read_core)
        self.admission = Admission(self.store, self.registry, services)
        self.api = ResourceAPI(self.store, self.registry, self.admission)
        self.hub = WatchHub(self.store)
        settings = Settings(server_address=f"{config.host}:{config.port}", bookmark_interval=config.bookmark_interval)
        self.handler = APIHandler(self.api, self.hub, self.registry, settings)
        self.material = certs.ensure(config.data_dir, [config.host])
        self.front_proxy = certs.ensure_front_proxy(config.data_dir)
        signer = Signer.load_or_create(config.data_dir)
        tokens = TokenAuthenticator(self.api, signer)
        self.authenticator = Authenticator(self.material.token, tokens)
        self.authorizer = RBACAuthorizer(self.store)
        self.handler.mount(TokenRequests(self.api, signer))
        self.handler.mount(Reviews(self.authorizer, self.authenticator.authenticate_token))
        self.aggregator = Aggregator(self.api, Backends(services, self.front_proxy))
        self.handler.aggregated_groups = self.aggregator.groups
        #: (name, controller, period in seconds)
        self._controllers: list[tuple[str, controlloop.Controller, float]] = [
            ("clusterrole-aggregation", ClusterRoleAggregation(self.api), 60.0),
            ("serviceaccount-token", TokenSecrets(self.api, signer, self.material.ca_cert.read_bytes()), 60.0),
            ("apiservice-availability", self.aggregator, 10.0),
        ]
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def kubeconfig_path(self) -> Path:
        return self.config.data_dir / api.KUBECONFIG_FILE

    def _read_core(self, plural: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """One stored object of the core group (a Service, its Endpoints), for the Service resolver."""
        rtype = self.registry.lookup("", "v1", plural)
        entry = self.store.get(rtype.key(namespace, name)) if rtype is not None else None
        return entry.obj if entry is not None else None

    def _load_crds(self) -> None:
        crd_type = self.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert crd_type is not None
        for _key, entry in self.store.list_current(crd_type.prefix()):
            crds.register(entry.obj, self.registry)

    async def _bootstrap(self) -> None:
        """Namespaces every cluster has from its first start, kube's RBAC defaults, and the
        extension-apiserver-authentication ConfigMap."""
        ns_type = self.registry.lookup("", "v1", "namespaces")
        assert ns_type is not None
        for name in INITIAL_NAMESPACES:
            if self.store.get(ns_type.key(None, name)) is None:
                obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                lifecycle.prepare_create(ns_type, obj, None)
                await self.store.create(ns_type.key(None, name), obj)
        await rbacbootstrap.ensure(self.store, self.registry)
        content = authconfigmap.data(self.material.ca_cert.read_bytes(), self.front_proxy)
        await authconfigmap.publish(self.store, self.registry, content)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.material.server_cert, self.material.server_key)
        ctx.load_verify_locations(cafile=str(self.material.ca_cert))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a client may instead present the bearer token
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def make_app(self) -> web.Application:
        access = AccessFilter(self.authenticator, self.authorizer)
        app = web.Application(middlewares=[access.middleware, self.aggregator.middleware], client_max_size=4 * 1024 * 1024,
                              handler_args={"max_field_size": 65536})
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handler)  # any path, newlines included
        return app

    async def start(self) -> None:
        self._load_crds()
        await self._bootstrap()
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=self._ssl_context(),
                           backlog=1024, reuse_address=True)
        await site.start()
        if self.config.port == 0:
            server = site._server  # the only way aiohttp exposes the bound port
            assert isinstance(server, asyncio.Server) and server.sockets
            self.config.port = server.sockets[0].getsockname()[1]
        await self._start_socket()
        kubeconfig.write(self.kubeconfig_path, kubeconfig.render(self.config.url, self.material),
                         self.config.kubeconfig_gid)
        self._tasks.append(asyncio.create_task(self._every(self.config.compact_interval, self._compact, "compaction")))
        # Events past the TTL go, swept at a tenth of it (at most a minute apart)
        sweep = max(0.5, min(60.0, self.config.event_ttl / 10))
        self._tasks.append(asyncio.create_task(self._every(sweep, self._expire, "event expiry")))
        for name, controller, period in self._controllers:
            trigger = controlloop.Trigger(self.store, controller.prefixes)
            self._tasks.append(asyncio.create_task(controlloop.run(name, trigger, controller.sync, period)))
        log.info("API server listening on %s", self.config.url)

    @property
    def socket_path(self) -> Path:
        return self.config.data_dir / api.SOCKET_FILE

    async def _start_socket(self) -> None:
        """The local unix socket (see the module docstring); skipped if its path is too long for AF_UNIX."""
        path = self.socket_path
        if len(str(path).encode()) > MAX_UNIX_PATH:
            log.warning("not serving on %s: the path is longer than a unix socket allows", path)
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of an earlier run
        assert self._runner is not None
        # (connecting needs write permission: between bind and chmod the usual umask leaves that to root)
        await web.UnixSite(self._runner, str(path), backlog=1024).start()
        gid = self.config.kubeconfig_gid
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, 0o660 if gid is not None else 0o600)

    async def _compact(self) -> None:
        removed = await self.store.compact()
        if removed:
            log.info("compacted %d rows up to revision %d", removed, self.store.compact_revision)

    async def _expire(self) -> None:
        await expire_events(self.store, self.registry, self.config.event_ttl, time.time())

    @staticmethod
    async def _every(interval: float, chore: Callable[[], Awaitable[None]], what: str) -> None:
        """Housekeeping: ``chore`` every ``interval`` seconds; a failure is logged, the next round comes."""
        while True:
            await asyncio.sleep(interval)
            try:
                await chore()
            except Exception as err:
                log.error("%s failed: %s", what, err)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.hub.close_all()
        for task in list(self.api.background):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.admission.close()
        await self.aggregator.backends.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.store.close()


async def serve_forever(config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop cleanly."""
    import signal

    server = APIServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"k3c API server listening on {config.url}; kubeconfig: {server.kubeconfig_path}", flush=True)
    await stop.wait()
    await server.stop()
