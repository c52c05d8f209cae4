"""Reaching an aggregated API server as kube-apiserver's aggregator does: address, TLS and the front proxy's word.

An APIService names a Service (resolved through the :mod:`~k3c.apiserver.services` seam), the CA its server's
certificate must chain to (``caBundle``; or ``insecureSkipTLSVerify``), and is checked for the name
``SERVICE.NAMESPACE.svc``. The aggregator presents the front proxy client certificate (CN
``front-proxy-client``, :func:`k3c.apiserver.certs.ensure_front_proxy`) and says who is asking in
``X-Remote-User``, ``X-Remote-Uid``, one ``X-Remote-Group`` per group and ``X-Remote-Extra-KEY`` per extra
value (the key percent-escaped as kube escapes it), after removing whatever of those the client sent, and
the client's ``Authorization``: the backend believes the headers because of the certificate, never the
client.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from k3c.apiserver.certs import FrontProxy
from k3c.apiserver.services import ServiceResolver
from k3c.apiserver.subresources import User

#: header bytes kube leaves as they are in an extra key (RFC 7230 tchar, but '%': it escapes)
_TOKEN_CHARS = frozenset(b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str
    port: int = 443


@dataclass(frozen=True)
class Backend:
    """Where one aggregated group/version is served and how its server is trusted."""

    service: ServiceRef
    ca_bundle: bytes = b""
    insecure: bool = False

    @property
    def server_name(self) -> str:
        return f"{self.service.name}.{self.service.namespace}.svc"


def escape_extra_key(key: str) -> str:
    """An extra key in a header name: bytes outside the token set (and '%') as %XX, as kube escapes them."""
    return "".join(chr(b) if b in _TOKEN_CHARS else f"%{b:02X}" for b in key.encode())


def remote_headers(user: User) -> list[tuple[str, str]]:
    """The front proxy's headers for ``user``."""
    headers = [("X-Remote-User", user.name)]
    if user.uid:
        headers.append(("X-Remote-Uid", user.uid))
    headers += [("X-Remote-Group", group) for group in user.groups]
    headers += [(f"X-Remote-Extra-{escape_extra_key(key)}", value) for key, values in user.extra for value in values]
    return headers


#: what a proxy never forwards: hop-by-hop headers, the client's credentials, and any identity it claims
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "authorization"})


def forwarded(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's headers a proxied request keeps."""
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-remote-")
            and not k.lower().startswith("impersonate-")]


class Backends:
    """Connections to aggregated API servers: one client session, one TLS context per trust setting."""

    def __init__(self, services: ServiceResolver, front_proxy: FrontProxy) -> None:
        self.services = services
        self.front_proxy = front_proxy
        self._contexts: dict[tuple[bytes, bool], ssl.SSLContext] = {}
        self._session: aiohttp.ClientSession | None = None

    def tls(self, backend: Backend) -> ssl.SSLContext:
        """The context verifying ``backend`` and presenting the front proxy certificate (ValueError, SSLError for
        a caBundle that is no PEM certificate)."""
        key = (hashlib.sha256(backend.ca_bundle).digest(), backend.insecure)
        ctx = self._contexts.get(key)
        if ctx is None:
            if backend.insecure:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif backend.ca_bundle:
                ctx = ssl.create_default_context(cadata=backend.ca_bundle.decode())
            else:
                ctx = ssl.create_default_context()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.front_proxy.client_cert, self.front_proxy.client_key)
            self._contexts[key] = ctx
        return ctx

    def endpoint(self, backend: Backend) -> tuple[str, int]:
        """The host and port to connect to (ServiceUnavailable when the Service cannot be resolved)."""
        host, port = self.services.resolve(backend.service.namespace, backend.service.name, backend.service.port)
        return host, port

    def address(self, backend: Backend) -> str:
        """``host:port`` to connect to (ServiceUnavailable when the Service cannot be resolved)."""
        host, port = self.endpoint(backend)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # no total timeout (watches and follows last), no decompression (bytes pass as they came), no limit
            # on connections (each watch holds one)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def backend_of(apiservice: Mapping[str, Any]) -> Backend | None:
    """The Backend of an APIService object; None for a Local one (served by this server)."""
    spec = apiservice.get("spec") or {}
    svc = spec.get("service")
    if not isinstance(svc, dict) or not svc.get("name"):
        return None
    import base64

    try:
        bundle = base64.b64decode(str(spec.get("caBundle") or ""))
    except ValueError:
        bundle = b""
    ref = ServiceRef(str(svc.get("namespace") or ""), str(svc["name"]), int(svc.get("port") or 443))
    return Backend(ref, bundle, bool(spec.get("insecureSkipTLSVerify")))
