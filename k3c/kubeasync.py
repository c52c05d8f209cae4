"""An asyncio Kubernetes client: kubeconfig in, JSON over one kept-alive aiohttp session out.

Two async users need one beside kopf's: the operator's reconcilers, which write on their own schedule
(:mod:`k3c.reconcilers.kube` builds its verbs on this), and the node agent's stream server, which reads and
watches the objects its streams belong to and asks the API server for SubjectAccessReviews
(:mod:`k3c.aggregated`). Kubeconfig parsing is :func:`k3c.kubeclient.load`'s (the CLI's rules; a
``tokenFile`` is read again as the kubelet rotates it), and a failure Status is raised as its
:mod:`k3c.apierrors` class, as the CLI's client raises it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
import orjson

from k3c import kubeclient
from k3c.apierrors import NotFound, from_status


class AsyncKube:
    """Async JSON client bound to one kubeconfig. Create it inside the event loop that uses it."""

    def __init__(self, kubeconfig: str, timeout: float = 30.0, user_agent: str = "k3c", *,
                 namespace: str | None = None, local_socket: bool = False, connections: int = 32) -> None:
        """``local_socket``: reach a local k3c API server over its unix socket when the kubeconfig is its own,
        as the CLI's client does (no TLS; the socket's mode is the access control). The Docker API, which
        already acts as the socket's user, wants that; the operator keeps its own identity over HTTPS."""
        self.conn = kubeclient.load(kubeconfig, namespace=namespace)
        connector: aiohttp.BaseConnector
        if local_socket and self.conn.socket_path:
            base_url = "http://localhost"
            connector = aiohttp.UnixConnector(self.conn.socket_path, limit=connections)
        else:
            base_url = self.conn.server
            connector = aiohttp.TCPConnector(ssl=self.conn.ssl_context, limit=connections)
        self.session = aiohttp.ClientSession(
            base_url=base_url,
            headers={"Accept": "application/json", "User-Agent": user_agent},
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )

    async def close(self) -> None:
        await self.session.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        if token := self.conn.bearer():
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                      params: Mapping[str, str] | None = None) -> dict[str, Any]:
        data = None if body is None else orjson.dumps(body)
        headers = self._headers(content_type if data is not None else None)
        async with self.session.request(method, path, data=data, headers=headers, params=params) as resp:
            raw = await resp.read()
        doc = orjson.loads(raw) if raw else {}
        if resp.status >= 400:
            raise from_status(resp.status, doc, raw.decode(errors="replace"))
        return doc

    async def get_object(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if there is none."""
        try:
            return await self.request("GET", path)
        except NotFound:
            return None

    async def watch(self, path: str, params: Mapping[str, str] | None = None
                    ) -> AsyncGenerator[dict[str, Any], None]:
        """Watch events (``{"type", "object"}``) of a collection until the server ends the stream.

        A refused watch raises its Status (410 Gone when the resourceVersion is too old); an ERROR event
        in the stream is yielded like any other, for the caller to read.
        """
        query = {**(params or {}), "watch": "true"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        async with self.session.get(path, params=query, headers=self._headers(), timeout=timeout) as resp:
            if resp.status >= 400:
                raw = await resp.read()
                raise from_status(resp.status, orjson.loads(raw) if raw.startswith(b"{") else {},
                                  raw.decode(errors="replace"))
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)
