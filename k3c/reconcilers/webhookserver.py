"""The HTTPS endpoint an API server calls for admission reviews, in the operator's own event loop.

It serves ``POST /validate/<name>`` for each handler it is given: the body is an AdmissionReview v1
(:mod:`k3c.admissionreview`), the answer the handler's response. Its CA and serving certificate live in a
directory of their own (``<root dir>/webhook``, keys 0600; :mod:`k3c.servingcerts`), made once and kept, so
the caBundle registered with the API server stays valid across restarts. It listens on 127.0.0.1 and a port
the kernel picks unless told otherwise; the registration carries the actual URL.

A handler that raises answers a refusal (500) naming the failure rather than no answer, so the webhook's
``failurePolicy`` is not the only thing between a bug and a request let through.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from k3c import admissionreview as ar
from k3c import servingcerts

log = logging.getLogger(__name__)

Handler = Callable[[ar.Request], Awaitable[ar.Response]]
#: The largest review accepted (an object plus its old version, as kube-apiserver sends them).
MAX_REVIEW = 8 * 1024 * 1024


class WebhookServer:
    def __init__(self, cert_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cert_dir = cert_dir
        self.host = host
        self.port = port
        self.handlers: dict[str, Handler] = {}
        self._runner: web.AppRunner | None = None
        self._material: servingcerts.ServingMaterial | None = None

    @property
    def ca_bundle(self) -> str:
        """The CA, base64 as a configuration's ``clientConfig.caBundle`` carries it."""
        assert self._material is not None, "not started"
        return base64.b64encode(self._material.ca_pem).decode()

    def url(self, name: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/validate/{name}"

    async def start(self, handlers: dict[str, Handler]) -> None:
        self.handlers = dict(handlers)
        hosts = [self.host, "127.0.0.1", "localhost"] if self.host not in ("0.0.0.0", "::") else ["127.0.0.1"]
        material = self._material = await asyncio.to_thread(servingcerts.ensure, self.cert_dir, hosts,
                                                            "k3c-webhook")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(material.cert, material.key)
        app = web.Application(client_max_size=MAX_REVIEW)
        app.router.add_post("/validate/{name}", self._review)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ctx, reuse_address=True)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        log.info("admission webhooks listening on https://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _review(self, request: web.Request) -> web.Response:
        handler = self.handlers.get(request.match_info["name"])
        if handler is None:
            raise web.HTTPNotFound()
        try:
            review = ar.parse_request(await request.json())
        except (ValueError, ar.ReviewError) as err:
            raise web.HTTPBadRequest(text=f"not an {ar.API_VERSION} AdmissionReview: {err}") from None
        try:
            response = await handler(review)
        except Exception as err:
            log.exception("webhook %s failed", request.match_info["name"])
            response = ar.deny(review["uid"], 500, "InternalError", f"k3c's webhook failed: {err}")
        return web.json_response(ar.answer(response))
