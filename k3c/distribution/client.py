"""The OCI distribution protocol over aiohttp: blobs (HEAD, GET, upload, cross-repo mount) and manifests.

Why our own client: containerd 1.6's API cannot push, and k3c needs pushes whose progress it can report
per layer, that skip blobs the registry has and mount blobs another repository of the same registry
already holds. One :class:`RegistryClient` talks to one registry host over one aiohttp session:

- the scheme is settled once by ``GET /v2/`` (HTTPS, then plain HTTP only where :mod:`.hosts` allows it);
- authentication follows the registry's challenges (:class:`~.auth.Authenticator`); a Basic challenge
  seen on that first request makes every later request carry credentials up front, so streamed upload
  bodies never need to be replayed after a 401, and bearer tokens are fetched before a body is streamed;
- uploads are monolithic (``POST`` then one streamed ``PUT``) or chunked (``PATCH`` with ``Content-Range``
  per chunk, then ``PUT``), both per the distribution spec.
"""

from __future__ import annotations

import os
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from k3c.oci.layout import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    sha256_digest,
)

from .auth import Authenticator, Credentials, pull_scope, push_scope
from .errors import NotFound, RegistryError, Unreachable, from_response
from .hosts import HostSettings

__all__ = ["MANIFEST_TYPES", "Manifest", "RegistryClient"]

MANIFEST_TYPES = (MEDIA_MANIFEST, MEDIA_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
_ACCEPT = ", ".join(MANIFEST_TYPES)
USER_AGENT = "k3c"
#: Bytes per read from a blob response; large reads keep Python's per-chunk cost negligible.
READ_CHUNK = 1 << 20

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry served it: its media type, exact bytes and digest."""

    media_type: str
    data: bytes
    digest: str

    @property
    def size(self) -> int:
        return len(self.data)


def _describe(err: BaseException) -> str:
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return f"x509: {err.certificate_error}"
    if isinstance(err, aiohttp.ClientConnectorDNSError) or isinstance(err.__cause__, socket.gaierror):
        return f"dial tcp: lookup {getattr(err, 'host', '')}: no such host"
    if isinstance(err, aiohttp.ClientConnectorError):
        os_err = err.os_error
        reason = os.strerror(os_err.errno).lower() if os_err.errno and os_err.errno > 0 else str(os_err)
        return f"dial tcp {err.host}:{err.port}: connect: {reason}"
    if isinstance(err, TimeoutError):
        return "timeout"
    return str(err) or type(err).__name__


class RegistryClient:
    """One registry host (``host[:port]`` as in references; ``docker.io`` means registry-1.docker.io)."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        settings: HostSettings | None = None,
        timeout: float = 60.0,
        connections: int = 8,
    ) -> None:
        self.host = "registry-1.docker.io" if host == "docker.io" else host
        self.settings = settings or HostSettings(self.host)
        self.auth = Authenticator(credentials, self.settings.may_send_credentials)
        self._ssl: ssl.SSLContext = self.settings.ssl_context()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ssl=self._ssl),
            timeout=aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15, sock_read=timeout),
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
        )
        self._base: str | None = None

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport

    async def base(self) -> str:
        """``scheme://host``, settled by the first ``GET /v2/`` that gets any HTTP answer."""
        if self._base is not None:
            return self._base
        last: BaseException | None = None
        for scheme in self.settings.schemes():
            url = f"{scheme}://{self.host}/v2/"
            try:
                async with self.session.get(url) as resp:
                    await resp.read()
                    challenge = resp.headers.get("WWW-Authenticate", "")
                    if resp.status == 401 and challenge.lower().startswith("basic"):
                        await self.auth.respond(self.session, challenge, ())
            except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as err:
                last = err
                continue
            self._base = f"{scheme}://{self.host}"
            return self._base
        assert last is not None
        raise Unreachable(f'Get "{url}": {_describe(last)}')

    async def _open(self, method: str, url: str, scopes: tuple[str, ...], *, headers: dict[str, str] | None = None,
                    data: Any = None, params: Any = None, replayable: bool = True) -> aiohttp.ClientResponse:
        """Send a request, answering one auth challenge; the caller reads and releases the response."""
        full = url if url.startswith(("http://", "https://")) else await self.base() + url
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            auth = self.auth.header(scopes)
            if auth:
                hdrs["Authorization"] = auth
            try:
                resp = await self.session.request(method, full, headers=hdrs, data=data, params=params)
            except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as err:
                raise Unreachable(f'{method.capitalize()} "{full}": {_describe(err)}') from None
            if resp.status != 401 or attempt or not replayable:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            await resp.read()
            if not challenge or not await self.auth.respond(self.session, challenge, scopes):
                return resp
            resp.release()
        raise AssertionError("unreachable")

    async def _call(self, method: str, url: str, scopes: tuple[str, ...], ok: tuple[int, ...],
                    **kw: Any) -> tuple[int, Mapping[str, str], bytes]:
        """A request whose whole (small) answer is wanted; raises the matching error unless ``ok``."""
        resp = await self._open(method, url, scopes, **kw)
        async with resp:
            body = await resp.read()
        if resp.status not in ok:
            raise from_response(resp.status, body, f'{method.capitalize()} "{resp.url}"')
        return resp.status, resp.headers, body

    async def ping(self) -> None:
        """``GET /v2/`` with credentials: raises :class:`~.errors.Unauthorized` if they are refused."""
        await self._call("GET", "/v2/", (), (200,))

    # ------------------------------------------------------------------ manifests

    async def get_manifest(self, repo: str, reference: str) -> Manifest:
        """A manifest or index by tag or digest (the digest is checked when asked for by digest)."""
        _, headers, body = await self._call("GET", f"/v2/{repo}/manifests/{reference}", (pull_scope(repo),),
                                            (200,), headers={"Accept": _ACCEPT})
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"manifest {reference} does not match its content ({digest})")
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = _sniff_manifest_type(body) or media_type
        return Manifest(media_type, body, digest)

    async def head_manifest(self, repo: str, reference: str) -> str | None:
        """The digest the registry has under a tag (None if none)."""
        try:
            _, headers, _ = await self._call("HEAD", f"/v2/{repo}/manifests/{reference}", (pull_scope(repo),),
                                             (200,), headers={"Accept": _ACCEPT})
        except NotFound:
            return None
        return headers.get("Docker-Content-Digest")

    async def put_manifest(self, repo: str, reference: str, media_type: str, data: bytes) -> str:
        """Upload a manifest/index under a tag or its digest; returns the digest."""
        _, headers, _ = await self._call("PUT", f"/v2/{repo}/manifests/{reference}", (push_scope(repo),),
                                         (200, 201, 202), headers={"Content-Type": media_type}, data=data)
        return headers.get("Docker-Content-Digest") or sha256_digest(data)

    # ------------------------------------------------------------------ blobs

    async def blob_size(self, repo: str, digest: str, scopes: tuple[str, ...] | None = None) -> int | None:
        """Size of a blob the repository has, else None (``HEAD``: nothing is transferred)."""
        resp = await self._open("HEAD", f"/v2/{repo}/blobs/{digest}", scopes or (pull_scope(repo),))
        async with resp:
            await resp.read()
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise from_response(resp.status, b"", f'Head "{resp.url}"')
        return int(resp.headers.get("Content-Length", "0"))

    async def start_upload(self, repo: str, mount: tuple[str, str] | None = None) -> str | None:
        """``POST …/blobs/uploads/``: the upload URL, or None when ``mount=(digest, from_repo)`` succeeded."""
        scopes = (push_scope(repo),) + ((pull_scope(mount[1]),) if mount else ())
        params = {"mount": mount[0], "from": mount[1]} if mount else None
        status, headers, _ = await self._call("POST", f"/v2/{repo}/blobs/uploads/", scopes, (201, 202),
                                              params=params)
        if status == 201:
            return None
        location = headers.get("Location")
        if not location:
            raise RegistryError("registry started an upload without a Location")
        return urllib.parse.urljoin(await self.base() + "/", location)

    async def upload(self, repo: str, location: str, digest: str, size: int, body: AsyncIterable[bytes],
                     *, chunk_size: int | None = None, progress: Progress | None = None) -> None:
        """Send a blob to an upload URL: monolithic (one streamed PUT) or chunked (PATCH per chunk)."""
        counted = _counting(body, progress)
        if chunk_size:
            location = await self._upload_chunks(repo, location, counted, chunk_size)
            await self._call("PUT", _with_query(location, digest=digest), (push_scope(repo),), (201,),
                             headers={"Content-Length": "0"}, replayable=False)
            return
        await self._call("PUT", _with_query(location, digest=digest), (push_scope(repo),), (201,),
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                         data=counted, replayable=False)

    async def _upload_chunks(self, repo: str, location: str, body: AsyncIterable[bytes], chunk_size: int) -> str:
        offset = 0
        async for chunk in _regroup(body, chunk_size):
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                       "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
            _, resp_headers, _ = await self._call("PATCH", location, (push_scope(repo),), (202,),
                                                  headers=headers, data=chunk, replayable=False)
            offset += len(chunk)
            location = urllib.parse.urljoin(location, resp_headers.get("Location") or location)
        return location

    async def push_blob(self, repo: str, digest: str, size: int, body: Callable[[], AsyncIterable[bytes]], *,
                        mount_from: str | None = None, chunk_size: int | None = None,
                        progress: Progress | None = None, check: bool = True) -> str:
        """Make the repository hold a blob; returns ``exists``, ``mounted`` or ``pushed``.

        ``body`` is called only when bytes must really be sent; ``check`` False skips the HEAD (the caller
        already knows the repository lacks the blob).
        """
        if check and await self.blob_size(repo, digest, (push_scope(repo),)) is not None:
            return "exists"
        location = await self.start_upload(repo, (digest, mount_from) if mount_from and mount_from != repo else None)
        if location is None:
            return "mounted"
        await self.upload(repo, location, digest, size, body(), chunk_size=chunk_size, progress=progress)
        return "pushed"

    async def fetch_blob(self, repo: str, digest: str) -> AsyncIterator[bytes]:
        """Stream a blob's bytes (redirects to a storage backend are followed)."""
        resp = await self._open("GET", f"/v2/{repo}/blobs/{digest}", (pull_scope(repo),))
        async with resp:
            if resp.status != 200:
                raise from_response(resp.status, await resp.read(), f'Get "{resp.url}"')
            try:
                async for chunk in resp.content.iter_chunked(READ_CHUNK):
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as err:
                raise Unreachable(f"reading blob {digest}: {_describe(err)}") from None


def _sniff_manifest_type(body: bytes) -> str:
    import json

    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if doc.get("mediaType"):
        return str(doc["mediaType"])
    return MEDIA_INDEX if "manifests" in doc else MEDIA_MANIFEST


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


async def _counting(body: AsyncIterable[bytes], progress: Progress | None) -> AsyncIterator[bytes]:
    done = 0
    async for chunk in body:
        yield chunk
        done += len(chunk)
        if progress is not None:
            progress(done)


async def _regroup(body: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    buf = bytearray()
    async for chunk in body:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)
