"""Another node's stream: where that node's agent is, and the request passed on to it.

The API server sends a stream request to any agent behind the Service; a container lives on one node only
(``status.node``), so an agent that gets a request for another node's object passes it on, as KubeVirt's
virt-api passes a console to the virt-handler of the VM's node. The agents are the endpoints of
``k3c-system/k3c-agent``, each address with its ``nodeName`` (the endpoints controller writes them; a test
without Pods writes them itself). The hop is authenticated both ways by the agents' shared serving
certificate (see :mod:`k3c.aggregated.authn`) and names the user in ``X-Remote-*`` headers; the peer
does not authorize again (this agent did) and never passes a request on once more.

When the hop fails (no agent for the node, its agent down or refusing), the client gets one line naming the
node and why, as a 503 (or the peer's own refusal), and this agent logs the same with the peer's address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from k3c import api, apierrors
from k3c.aggregated.reader import status_error
from k3c.apiserver import errors
from k3c.apiserver.backends import forwarded, remote_headers
from k3c.apiserver.subresources import User
from k3c.apiserver.wsrelay import UpgradeRefused, offered, open_upstream, refusal, relay
from k3c.kubeasync import AsyncKube

log = logging.getLogger(__name__)

#: The name an agent's serving certificate is checked for, whichever address it was reached at.
SERVER_NAME = f"{api.AGENT_NAME}.{api.AGENT_NAMESPACE}.svc"


def unavailable(message: str) -> errors.APIError:
    return errors.APIError(503, "ServiceUnavailable", message)


def reason(err: BaseException) -> str:
    """Why a call failed, in one line: the OS's words for a connection that failed (not aiohttp's repr of
    the TLS context), else the error's own text."""
    if isinstance(err, aiohttp.ClientConnectorError) and not isinstance(err, aiohttp.ClientSSLError):
        err = err.os_error
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    return " ".join((str(err) or type(err).__name__).split())


def peer_failed(node: str, where: str, what: str) -> errors.APIError:
    """The one-line 503 a client gets when node ``node``'s agent at ``where`` cannot be reached, logged too."""
    log.warning("peer call to the k3c agent of node %s at %s failed: %s", node, where, what)
    return unavailable(f'the k3c agent of node "{node}" ({where}) {what}')


def address_of(endpoints: dict[str, Any], node: str) -> tuple[str, int] | None:
    """(ip, port) of the agent on ``node`` in the Service's Endpoints, or None."""
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p for p in ports if p.get("name") == "https"), ports[0] if ports else None)
        if port is None:
            continue
        for address in subset.get("addresses") or []:
            if address.get("nodeName") == node and address.get("ip"):
                return str(address["ip"]), int(port.get("port") or api.STREAMS_PORT)
    return None


@dataclass(frozen=True)
class AgentIdentity:
    """The certificate an agent serves with and presents to its peers, and the CA that signs them all."""

    cert: Path
    key: Path
    ca: Path

    def client_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


class Peers:
    """Passes requests on to the agents of other nodes."""

    def __init__(self, kube: AsyncKube, identity: AgentIdentity) -> None:
        self.kube = kube
        self.tls = identity.client_tls()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # no total timeout: a log follow lasts; bytes pass as they came
            self._session = aiohttp.ClientSession(auto_decompress=False,
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def address(self, node: str) -> tuple[str, int]:
        """Where ``node``'s agent listens; a 503 Status when that node has none."""
        try:
            endpoints = await self.kube.get_object(api.ENDPOINTS.path(api.AGENT_NAMESPACE, api.AGENT_NAME))
        except apierrors.APIError as err:
            raise status_error(err) from None
        found = address_of(endpoints or {}, node)
        if found is None:
            log.warning("peer call to node %s failed: no address with that nodeName in the endpoints of %s/%s",
                        node, api.AGENT_NAMESPACE, api.AGENT_NAME)
            raise unavailable(f'no k3c agent serves node "{node}" (no address with that nodeName in the endpoints '
                              f'of {api.AGENT_NAMESPACE}/{api.AGENT_NAME})')
        return found

    async def forward(self, node: str, request: web.Request, user: User) -> web.StreamResponse:
        """``request`` answered by ``node``'s agent, streamed back (a websocket joined message by message)."""
        host, port = await self.address(node)
        headers = forwarded(request.headers.items()) + remote_headers(user)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(node, host, port, request, headers)
        where = _where(host, port)
        url = f"https://{where}{request.path_qs}"
        body = request.content if request.body_exists else None
        try:
            upstream = await self.session.request(request.method, url, headers=headers, data=body, ssl=self.tls,
                                                  server_hostname=SERVER_NAME, allow_redirects=False)
        except (aiohttp.ClientError, OSError) as err:
            raise peer_failed(node, where, f"cannot be reached: {reason(err)}") from None
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "keep-alive", "content-length"):
                    response.headers.add(key, value)
            await response.prepare(request)
            with contextlib.suppress(aiohttp.ClientError, ConnectionResetError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, node: str, host: str, port: int, request: web.Request,
                         headers: list[tuple[str, str]]) -> web.StreamResponse:
        """The upgrade passed on; the peer's own refusal (its Status) passed back as it answered."""
        try:
            upstream = await open_upstream(host, port, SERVER_NAME, request.path_qs, tls=self.tls, headers=headers,
                                           protocols=offered(request))
        except UpgradeRefused as err:
            return refusal(err)
        except (OSError, TimeoutError) as err:
            raise peer_failed(node, _where(host, port), f"cannot be reached: {reason(err)}") from None
        return await relay(request, upstream)


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
