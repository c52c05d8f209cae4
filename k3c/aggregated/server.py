"""A node's stream server: ``streams.k3c.io/v1alpha1`` over HTTPS, behind the cluster's API server.

Every request passes, in order:

1. authentication (:mod:`k3c.aggregated.authn`): the front proxy's client certificate, or a peer agent's;
   anything else is refused with 401 (the probes' ``/healthz``, ``/livez`` and ``/readyz`` excepted);
2. discovery (``/apis``, ``/apis/streams.k3c.io``, ``/apis/streams.k3c.io/v1alpha1``) and the OpenAPI v3
   document are answered here;
3. authorization (:mod:`k3c.aggregated.authz`): a SubjectAccessReview of the parent's subresource;
4. placement: an object on another node goes to that node's agent (:mod:`k3c.aggregated.peers`);
5. the provider of the route, the same one the embedded server mounts, with a
   :class:`~k3c.aggregated.reader.KubeReader` for the parents.

The front proxy's CA comes from ``kube-system/extension-apiserver-authentication``, read at start (no
serving without it) and again every minute, so a rotated CA is trusted without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from aiohttp import web

from k3c import api, apierrors
from k3c.aggregated import routes
from k3c.aggregated.authn import AUTHENTICATION_CONFIGMAP, Authenticator, RequestHeaderConfig
from k3c.aggregated.authz import Authorizer
from k3c.aggregated.peers import AgentIdentity, Peers
from k3c.aggregated.reader import KubeReader
from k3c.apiserver import errors
from k3c.apiserver.subresources import Provider, Route, SubresourceHandler, SubresourceRequest
from k3c.kubeasync import AsyncKube

log = logging.getLogger(__name__)

#: How often the front proxy's configuration is read again.
REFRESH_SECONDS = 60.0
_PROBES = ("healthz", "livez", "readyz")
#: How long a stream of a container no node has claimed yet waits for one to.
CLAIM_WAIT = 10.0


@dataclass(frozen=True)
class StreamServerConfig:
    node: str  #: this node's name: objects whose ``status.node`` is another are passed on
    host: str
    port: int
    identity: AgentIdentity


def status_response(err: errors.APIError) -> web.Response:
    return web.Response(status=err.code, body=orjson.dumps(err.status()), content_type="application/json")


def _json(doc: object) -> web.Response:
    return web.Response(body=orjson.dumps(doc), content_type="application/json")


class StreamServer:
    """The aggregated API server of one node (see the module docstring)."""

    def __init__(self, kube: AsyncKube, config: StreamServerConfig, providers: Iterable[Provider]) -> None:
        self.kube = kube
        self.config = config
        self.handlers: dict[Route, SubresourceHandler] = {}
        for provider in providers:
            self.handlers.update(provider.routes())
        self.authn = Authenticator(config.identity.ca.read_text())
        self.authz = Authorizer(kube)
        self.peers = Peers(kube, config.identity)
        self._tls: ssl.SSLContext | None = None
        self._trusted: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the front proxy's configuration, then listen (raises the API error if it cannot be read)."""
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.config.identity.cert, self.config.identity.key)
        tls.load_verify_locations(cafile=str(self.config.identity.ca))
        tls.verify_mode = ssl.CERT_OPTIONAL  # the probes come without one; the handler refuses the rest
        self._tls = tls
        await self.refresh()
        app = web.Application(client_max_size=3 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=tls).start()
        self._refresher = asyncio.ensure_future(self._refresh_forever())
        log.info("streams of node %s served on https://%s:%d", self.config.node, self.config.host, self.config.port)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._runner is not None:
            await self._runner.cleanup()
        await self.peers.close()

    async def refresh(self) -> None:
        """Take the front proxy's configuration (and trust its CA) from the ConfigMap as it is now."""
        namespace, name = AUTHENTICATION_CONFIGMAP
        obj = await self.kube.request("GET", api.CONFIG_MAPS.path(namespace, name))
        config = RequestHeaderConfig.from_configmap(obj.get("data") or {})
        if config is not None and config.ca_pem not in self._trusted and self._tls is not None:
            self._tls.load_verify_locations(cadata=config.ca_pem)
            self._trusted.add(config.ca_pem)
        self.authn.set_front_proxy(config)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except (apierrors.APIError, OSError) as err:
                log.warning("cannot read %s/%s: %s", *AUTHENTICATION_CONFIGMAP, err)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except errors.APIError as err:
            return status_response(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as err:  # answer, log, keep serving
            log.exception("internal error on %s %s", request.method, request.path)
            return status_response(errors.internal(str(err)))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if len(parts) == 1 and parts[0] in _PROBES:
            return web.Response(text="ok")
        caller = self.authn.authenticate(request)
        if parts == ["apis"]:
            return _json(routes.api_group_list())
        if parts == ["openapi", "v3"]:
            return _json(routes.openapi_index())
        if "/" + "/".join(parts) == routes.openapi_path():
            return _json(routes.openapi_document(self.handlers))
        if parts == ["apis", api.STREAMS_GROUP]:
            return _json(routes.api_group())
        if parts[:3] != ["apis", api.STREAMS_GROUP, api.STREAMS_VERSION]:
            raise errors.gone_resource("the server could not find the requested resource")
        if len(parts) == 3:
            return _json(routes.resource_list(self.handlers))
        target = routes.parse(parts[3:])
        handler = self.handlers.get(target.route)
        if handler is None:
            raise errors.gone_resource("the server could not find the requested resource")
        reader = KubeReader(self.kube, target.resource)
        if not caller.via_peer:  # a peer checked both already
            websocket = request.headers.get("Upgrade", "").lower() == "websocket"
            await self.authz.authorize(caller.user, target.request_info(request.method, request.query, websocket))
            node = await self._node_of(reader, target)
            if node and node != self.config.node:
                return await self.peers.forward(node, request, caller.user)
        sub = SubresourceRequest(target.route, target.namespace, target.name, request, caller.user, reader)
        return await handler(sub)

    async def _node_of(self, reader: KubeReader, target: routes.Target) -> str:
        """The node of the object the URL names ("" for none: the provider answers, here).

        A container not placed yet (``k3c run`` attaches right after creating it) is waited for a moment,
        until an agent claims it: the stream must go where it will run.
        """
        if not routes.names_an_object(target):
            return ""
        deadline = asyncio.get_running_loop().time() + CLAIM_WAIT
        while True:
            try:
                node = routes.node_of(await reader.get(target.namespace, target.name))
            except errors.APIError as err:
                if err.code == 404:
                    return ""
                raise
            if node or target.resource != api.LOCAL_CONTAINERS or asyncio.get_running_loop().time() > deadline:
                return node
            await asyncio.sleep(0.1)
