"""A small Kubernetes REST client for the CLI: kubeconfig in, JSON over one kept-alive HTTPS connection out.

Why not the official client: importing it costs about half a second, and the CLI must feel instant.
This speaks only what the CLI needs: get/list/create/patch/delete, watch streams, and the URL plus TLS
context for websocket streams (logs/exec/attach). The kubeconfig is --kubeconfig, else K3C_KUBECONFIG, else
the local k3c's: never KUBECONFIG, which users point at their clusters for kubectl; within it, kubectl's
rules (--context, the context's namespace). A failure Status is raised as its
:mod:`k3c.apierrors` class; URLs come from :class:`k3c.api.Resource`.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from k3c import api
from k3c.apierrors import APIError, NotFound, from_status
from k3c.unixhttp import UnixConnection, open_socket

if TYPE_CHECKING:  # both are imported where a command needs them: together ~25 ms of every start
    import http.client
    import ssl


class ConfigError(Exception):
    """The kubeconfig is missing or unusable."""


class Connection(NamedTuple):
    """Where and how to reach the API server, resolved from a kubeconfig.

    ``socket_path`` is the local k3c's unix socket when the kubeconfig is its own (see :func:`load`):
    plain HTTP there skips the TLS context and handshake, ~7 ms of every command. The TLS context is
    built only when something needs it (websocket streams, or no socket), and once (``tls`` remembers it).
    A NamedTuple: ``dataclasses`` brings ``inspect``, ~10 ms of every command's start.
    """

    server: str
    token: str | None
    namespace: str
    tls: Callable[[], ssl.SSLContext]
    socket_path: str | None = None
    #: a kubeconfig user's ``tokenFile`` (a ServiceAccount's projected token, which the kubelet rotates):
    #: read again whenever it changes, and preferred to ``token``
    token_file: str | None = None

    def bearer(self) -> str | None:
        """The bearer token to send now: the token file's current content, else the kubeconfig's token."""
        if self.token_file:
            return _read_token(self.token_file)
        return self.token

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self.tls()

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.server).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.server).port or 443


def kubeconfig_path(explicit: str | None = None) -> str:
    """--kubeconfig, then K3C_KUBECONFIG, then the local k3c's (KUBECONFIG is kubectl's, not ours)."""
    return explicit or os.environ.get("K3C_KUBECONFIG") or api.DEFAULT_KUBECONFIG


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        import base64

        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = Path(entry[key])
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise ConfigError(f"{what} {name!r} not found in kubeconfig")


def _parse(text: str, cfg_path: Path) -> dict[str, Any]:
    """A kubeconfig document: JSON (as k3c writes it) without importing a YAML parser, else YAML."""
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
            return doc if isinstance(doc, dict) else {}
        except ValueError:
            pass  # YAML flow style that is not JSON: let the YAML parser decide
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid kubeconfig {cfg_path}: {str(err).splitlines()[0]}") from None
    return doc if isinstance(doc, dict) else {}


def load(path: str | None = None, context: str | None = None, namespace: str | None = None) -> Connection:
    cfg_path = Path(kubeconfig_path(path))
    try:
        doc = _parse(cfg_path.read_text(), cfg_path)
    except FileNotFoundError:
        raise ConfigError(f"cannot read kubeconfig {cfg_path}: is the k3c daemon running? "
                          "(start it with `k3c daemon`)") from None
    except PermissionError:
        raise ConfigError(f"permission denied reading {cfg_path}: run as root or a member of k3c's group") from None
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ConfigError(f"kubeconfig {cfg_path} has no current context")
    ctx = _named(doc.get("contexts", []), ctx_name, "context")
    cluster = _named(doc.get("clusters", []), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users", []), ctx.get("user", ""), "user")
    base = cfg_path.parent
    server = cluster.get("server", "").rstrip("/")
    token_file = user.get("tokenFile")
    return Connection(
        server=server, token=user.get("token"), namespace=namespace or ctx.get("namespace") or "default",
        tls=functools.cache(functools.partial(_tls_context, cluster, user, base)),
        socket_path=_local_socket(base, server),
        token_file=str(base / token_file) if token_file else None,
    )


_tokens: dict[str, tuple[float, str]] = {}


def _read_token(path: str) -> str | None:
    """A token file's content, cached until the file changes (the kubelet replaces it as it rotates)."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    cached = _tokens.get(path)
    if cached is None or cached[0] != mtime:
        try:
            cached = (mtime, Path(path).read_text().strip())
        except OSError:
            return None
        _tokens[path] = cached
    return cached[1] or None


def _tls_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    import ssl

    # Only the kubeconfig's CA is trusted when it names one: loading the system store costs ~40 ms a command.
    ca = _data_or_file(cluster, "certificate-authority", base)
    if ca:
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ssl_ctx.load_verify_locations(cadata=ca.decode())
    else:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cluster.get("insecure-skip-tls-verify"):
        ssl_ctx.check_hostname = False
        ssl_ctx.verify_mode = ssl.CERT_NONE
    cert = _data_or_file(user, "client-certificate", base)
    key = _data_or_file(user, "client-key", base)
    if cert and key:
        _load_client_cert(ssl_ctx, cert, key)
    return ssl_ctx


def _local_socket(base: Path, server: str) -> str | None:
    """The k3c API server's unix socket beside its own kubeconfig, if the server is on this machine and
    we may connect to it (the socket's 0600/0660 mode is its access control, as with docker.sock)."""
    host = urllib.parse.urlsplit(server).hostname or ""
    if host not in ("127.0.0.1", "::1", "localhost"):
        return None
    path = base / api.SOCKET_FILE
    try:
        if stat.S_ISSOCK(path.stat().st_mode) and os.access(path, os.R_OK | os.W_OK):
            return str(path)
    except OSError:
        pass
    return None


def _unix_http_connection(path: str, timeout: float | None, blocksize: int) -> http.client.HTTPConnection:
    """http.client's HTTP/1.1 over a unix socket (the local k3c's API socket), for archives and uploads."""
    import http.client

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = open_socket(path, self.timeout)

    return UnixHTTPConnection("localhost", timeout=timeout, blocksize=blocksize)


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl only loads key material from files: a private temp file that is gone right after."""
    import tempfile  # here: it brings shutil, ~3 ms of every command's start, and only TLS needs it

    with tempfile.NamedTemporaryFile(prefix="k3c-", suffix=".pem") as f:
        os.chmod(f.name, 0o600)
        f.write(cert + b"\n" + key)
        f.flush()
        ctx.load_cert_chain(f.name)


class Client:
    """Blocking JSON client over one kept-alive connection (re-opened if the server closed it): the local
    k3c's unix socket in plain HTTP (:mod:`k3c.unixhttp`), else HTTPS."""

    def __init__(self, conn: Connection, timeout: float = 30.0):
        self.conn = conn
        self.timeout = timeout
        self._http: http.client.HTTPConnection | UnixConnection | None = None
        self._streams_served: bool | None = None

    def connection(self, timeout: float | None = None, blocksize: int = 8192, *,
                   unbounded: bool = False) -> http.client.HTTPConnection:
        """A new http.client connection to the API server (for archives and uploads, which use more of
        its interface): its unix socket when local, else HTTPS. ``timeout`` defaults to the client's;
        ``unbounded`` has none, for archives whose other end may be silent for long (a ``load`` answers
        only once the whole import is done)."""
        limit = None if unbounded else timeout or self.timeout
        if self.conn.socket_path:
            return _unix_http_connection(self.conn.socket_path, limit, blocksize)
        import http.client

        return http.client.HTTPSConnection(self.conn.host, self.conn.port, context=self.conn.ssl_context,
                                           timeout=limit, blocksize=blocksize)

    def _json_connection(self, timeout: float | None = None) -> http.client.HTTPConnection | UnixConnection:
        """A connection for requests, watches and line streams: on the local socket, one that does not
        import http.client."""
        if self.conn.socket_path:
            return UnixConnection(self.conn.socket_path, timeout=timeout or self.timeout)
        return self.connection(timeout)

    def headers(self, content_type: str | None = None, accept: str = "application/json") -> dict[str, str]:
        """Request headers: credentials (when the kubeconfig has a token), what is sent and accepted."""
        h = {"Accept": accept, "User-Agent": "k3c"}
        if token := self.conn.bearer():
            h["Authorization"] = f"Bearer {token}"
        if content_type:
            h["Content-Type"] = content_type
        return h

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: dict[str, Any] | None = None) -> dict[str, Any]:
        url = path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            if self._http is None:
                self._http = self._json_connection()
            try:
                self._http.request(method, url, body=data, headers=self.headers(content_type if data else None))
                resp = self._http.getresponse()
                raw = resp.read()
                break
            except (BrokenPipeError, ConnectionResetError):  # (http.client's RemoteDisconnected is one)
                self.close()
                if attempt == 2:
                    raise
            except ConnectionRefusedError:
                self.close()
                raise ConnectionError(f"cannot connect to the k3c API at {self.conn.server}: "
                                      "is the k3c daemon running?") from None
        doc = json.loads(raw) if raw else {}
        if resp.status >= 400:
            raise from_status(resp.status, doc, raw.decode(errors="replace"))
        return doc

    def lines(self, path: str, **query: Any) -> Iterator[str]:
        """Lines of a streamed text response (e.g. a build's ``log?follow=true``) on the shared connection.

        Reusing the connection saves a TLS handshake; once the response ends the connection serves the
        next request. Stopping early (Ctrl-C) leaves it mid-response, so it is closed then.
        """
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        if self._http is None:
            self._http = self._json_connection()
        finished = False
        try:
            self._http.request("GET", url, headers=self.headers(accept="text/plain, */*"))
            if self._http.sock is not None:
                self._http.sock.settimeout(None)  # a build step may print nothing for minutes
            resp = self._http.getresponse()
            if resp.status >= 400:
                raw = resp.read()
                doc = json.loads(raw) if raw.startswith(b"{") else {}
                finished = True
                raise from_status(resp.status, doc, raw.decode(errors="replace"))
            while line := resp.readline():
                yield line.decode(errors="replace").rstrip("\n")
            finished = True
            if self._http.sock is not None:
                self._http.sock.settimeout(self.timeout)
        finally:
            if not finished:
                self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # ---- convenience ------------------------------------------------------------------------------
    def get(self, path: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", path, query=query or None)

    def stream_path(self, parent: api.Resource, namespace: str | None, name: str, sub: str) -> str:
        """Where a stream of a k3c object is served: the aggregated ``streams.k3c.io`` when discovery lists it
        (a cluster's node agents serve them: a CRD has no custom subresources), else the object's own
        subresource (k3c's embedded API server)."""
        if self.streams_aggregated():
            return api.streams_path(parent, namespace, name, sub)
        return parent.path(namespace, name, sub)

    def streams_aggregated(self) -> bool:
        """Whether the streams are the node agents' (a cluster), as discovery says; asked once per client."""
        if self._streams_served is None:
            try:
                self.get(f"/apis/{api.STREAMS_GROUP_VERSION}")
                self._streams_served = True
            except NotFound:
                self._streams_served = False
            except APIError:  # registered but failing (503 while the agents are down): say so from there
                self._streams_served = True
        return self._streams_served

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, obj)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, path: str, **query: Any) -> dict[str, Any]:
        return self.request("DELETE", path, query=query or None)

    def watch(self, path: str, timeout: float | None = None, **query: Any) -> Iterator[dict[str, Any]]:
        """Yield watch events (dicts with type and object) from a dedicated connection."""
        q = {"watch": "true", **query}
        url = path + "?" + urllib.parse.urlencode(q)
        http_conn = self._json_connection(timeout=timeout)
        try:
            http_conn.request("GET", url, headers=self.headers())
            resp = http_conn.getresponse()
            if resp.status >= 400:
                raise from_status(resp.status, json.loads(resp.read() or b"{}"))
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            http_conn.close()

    def websocket_url(self, path: str, query: list[tuple[str, str]]) -> str:
        """wss:// URL for a streaming subresource (exec/attach/log with websockets)."""
        base = self.conn.server.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return base + path + ("?" + urllib.parse.urlencode(query) if query else "")

