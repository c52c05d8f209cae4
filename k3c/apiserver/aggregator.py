"""APIService aggregation: requests for an aggregated group/version proxied to its server, as kube's aggregator does.

An APIService ``VERSION.GROUP`` with a ``spec.service`` hands every request under ``/apis/GROUP/VERSION`` to
that Service's server (:mod:`k3c.apiserver.backends`): after this server's own authentication and
authorization, with the front proxy certificate and the user in ``X-Remote-*`` headers. Bodies and
responses stream both ways (a watch, a log follow), and a websocket upgrade (``exec``, ``attach``) is
joined message by message. ``/apis`` lists the aggregated groups, ``/apis/GROUP`` answers for them here;
``/openapi/v3`` lists them too, and their documents (``/openapi/v3/apis/GROUP/VERSION``) come from their servers.

The availability controller (:meth:`Aggregator.sync`) checks each one, as kube's does, by asking its
server for ``/apis/GROUP/VERSION`` and writes the ``Available`` condition; while it is ``False`` requests get
kube's 503 Status at once, and a server that cannot be reached mid-request gets one too.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from k3c.apiserver import errors
from k3c.apiserver.authn import user_of
from k3c.apiserver.backends import Backend, Backends, backend_of, forwarded, remote_headers
from k3c.apiserver.handlers import status_response
from k3c.apiserver.rest import ResourceAPI, WriteOptions
from k3c.apiserver.services import ServiceUnavailable
from k3c.apiserver.storage import Event
from k3c.apiserver.wsrelay import UpgradeRefused, offered, open_upstream, refusal, relay

log = logging.getLogger(__name__)

GROUP = "apiregistration.k8s.io"
#: the availability check's budget per backend (kube's is 5 s too)
CHECK_TIMEOUT = 5.0
MANAGER = "kube-apiserver"


@dataclass(frozen=True)
class Route:
    """One aggregated group/version: the APIService's name and where it is served."""

    name: str
    group: str
    version: str
    backend: Backend
    available: bool


def unavailable(message: str = "service unavailable") -> errors.APIError:
    return errors.APIError(503, "ServiceUnavailable", message)


class Aggregator:
    """The aggregated group/versions of one server, its proxy, and its availability controller."""

    def __init__(self, api: ResourceAPI, backends: Backends) -> None:
        self.api = api
        self.backends = backends
        rtype = api.registry.lookup(GROUP, "v1", "apiservices")
        assert rtype is not None
        self.rtype = rtype
        self._routes: dict[tuple[str, str], Route] | None = None
        api.store.listeners.append(self._forget)

    # ---- the routing table ------------------------------------------------------------------------
    def _forget(self, event: Event) -> None:
        if event.key.startswith(self.rtype.prefix()):
            self._routes = None

    def routes(self) -> dict[tuple[str, str], Route]:
        if self._routes is None:
            routes = {}
            for _key, entry in self.api.store.list_current(self.rtype.prefix()):
                spec = entry.obj.get("spec") or {}
                backend = backend_of(entry.obj)
                if backend is None or not spec.get("group") or not spec.get("version"):
                    continue  # Local: served by this server
                route = Route(entry.obj["metadata"]["name"], str(spec["group"]), str(spec["version"]), backend,
                              _condition(entry.obj) != "False")
                routes[(route.group, route.version)] = route
            self._routes = routes
        return self._routes

    def groups(self) -> dict[str, list[str]]:
        """The aggregated groups and their versions, for discovery."""
        out: dict[str, list[str]] = {}
        for group, version in sorted(self.routes()):
            out.setdefault(group, []).append(version)
        return out

    # ---- the proxy --------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] == ["openapi", "v3"] and len(parts) == 5:  # an aggregated group's OpenAPI is its server's
            parts = parts[2:]
        route = self.routes().get((parts[1], parts[2])) if len(parts) >= 3 and parts[0] == "apis" else None
        if route is None:
            return await handler(request)
        if not route.available:
            return status_response(unavailable())
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._websocket(request, route.backend)
            return await self._proxy(request, route.backend)
        except errors.APIError as err:
            return status_response(err)

    def _target(self, request: web.Request, backend: Backend) -> tuple[str, ssl.SSLContext, list[tuple[str, str]]]:
        try:
            address = self.backends.address(backend)
            tls = self.backends.tls(backend)
        except ServiceUnavailable as err:
            raise unavailable(str(err)) from None
        except (ValueError, ssl.SSLError) as err:
            raise unavailable(f"invalid caBundle: {err}") from None
        headers = forwarded(request.headers.items()) + remote_headers(user_of(request))
        headers.append(("Host", backend.server_name))
        return f"https://{address}{request.rel_url}", tls, headers

    async def _proxy(self, request: web.Request, backend: Backend) -> web.StreamResponse:
        url, tls, headers = self._target(request, backend)
        body = request.content if request.body_exists else None
        try:
            upstream = await self.backends.session.request(
                request.method, url, headers=headers, data=body, ssl=tls, server_hostname=backend.server_name,
                allow_redirects=False)
        except (aiohttp.ClientError, OSError) as err:
            raise unavailable(f"error trying to reach service: {err}") from None
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "keep-alive", "content-length"):
                    response.headers.add(key, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            with contextlib.suppress(aiohttp.ClientError, ConnectionResetError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, backend: Backend) -> web.StreamResponse:
        """The upgrade passed on to the backend; its refusal passed back as it answered (see wsrelay)."""
        _, tls, headers = self._target(request, backend)
        try:
            host, port = self.backends.endpoint(backend)
        except ServiceUnavailable as err:
            raise unavailable(str(err)) from None
        try:
            upstream = await open_upstream(host, port, backend.server_name, str(request.rel_url), tls=tls,
                                           headers=headers, protocols=offered(request))
        except UpgradeRefused as err:
            return refusal(err)
        except (OSError, TimeoutError) as err:
            raise unavailable(f"error trying to reach service: {err}") from None
        return await relay(request, upstream)

    # ---- availability -----------------------------------------------------------------------------
    @property
    def prefixes(self) -> tuple[str, ...]:
        core = [self.api.registry.lookup("", "v1", plural) for plural in ("services", "endpoints")]
        return (self.rtype.prefix(), *(rtype.prefix() for rtype in core if rtype is not None))

    async def sync(self) -> None:
        """Check every APIService and write its ``Available`` condition where it changed."""
        entries = [entry.obj for _key, entry in self.api.store.list_current(self.rtype.prefix())]
        checks = [self._check(obj) for obj in entries]
        for obj, (status, reason, message) in zip(entries, await asyncio.gather(*checks), strict=True):
            await self._set_condition(obj, status, reason, message)

    async def _check(self, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        backend = backend_of(obj)
        if backend is None:
            return "True", "Local", "Local APIServices are always available"
        spec = obj.get("spec") or {}
        try:
            address = self.backends.address(backend)
            tls = self.backends.tls(backend)
        except ServiceUnavailable as err:
            return "False", "EndpointsNotFound", f"cannot find endpoints: {err}"
        except (ValueError, ssl.SSLError) as err:
            return "False", "FailedDiscoveryCheck", f"invalid caBundle: {err}"
        url = f"https://{address}/apis/{spec.get('group')}/{spec.get('version')}"
        try:
            async with self.backends.session.get(
                    url, ssl=tls, server_hostname=backend.server_name, headers=[("Host", backend.server_name)],
                    timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT)) as r:
                if 200 <= r.status < 300:
                    return "True", "Passed", "all checks passed"
                return "False", "FailedDiscoveryCheck", f"failing or missing response from {url}: bad status from " \
                                                        f"{url}: {r.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            return "False", "FailedDiscoveryCheck", f"failing or missing response from {url}: {err}"

    async def _set_condition(self, obj: Mapping[str, Any], status: str, reason: str, message: str) -> None:
        conditions = [c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
        current = next((c for c in conditions if c.get("type") == "Available"), None)
        if current is not None and (current.get("status"), current.get("reason"), current.get("message")) == (
                status, reason, message):
            return
        when = current.get("lastTransitionTime") if current is not None and current.get("status") == status else \
            dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"type": "Available", "status": status, "lastTransitionTime": when, "reason": reason,
                     "message": message}
        updated = copy.deepcopy(dict(obj))
        updated["status"] = {**(updated.get("status") or {}),
                             "conditions": [c for c in conditions if c.get("type") != "Available"] + [condition]}
        try:
            await self.api.update(self.rtype, None, obj["metadata"]["name"], updated,
                                  WriteOptions(field_manager=MANAGER), subresource="status")
        except errors.APIError as err:  # written meanwhile: that write wakes the next round
            log.info("APIService %s: status not written: %s", obj["metadata"]["name"], err.message)


def _condition(obj: Mapping[str, Any]) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Available":
            return str(c.get("status"))
    return "Unknown"
