"""A real validating admission webhook for tests: aiohttp over HTTPS, in a thread of the test process.

Its CA and serving certificate are made here (for 127.0.0.1 and the DNS names given, e.g. a Service's
``NAME.NAMESPACE.svc``). Every AdmissionReview it receives is kept by path, and each path answers its own
way (see :data:`ANSWERS`), so a test can assert both what kube-apiserver's side sent and what the client
saw of the answer.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.harness import free_port
from tests.support.images_harness import make_ca_and_cert

#: Seconds the ``/slow`` path waits before allowing.
SLOW = 3.0


def _name_of(request: dict[str, Any]) -> str:
    obj = request.get("object") or request.get("oldObject") or {}
    return str(request.get("name") or (obj.get("metadata") or {}).get("name") or "")


def _answer(path: str, request: dict[str, Any]) -> dict[str, Any]:
    """The ``response`` (without uid) for a review sent to ``path``."""
    if path == "deny-prefixed":
        if _name_of(request).startswith("deny-"):
            return {"allowed": False, "status": {"message": "names starting with deny- are refused here"}}
        return {"allowed": True}
    if path == "conflict":
        return {"allowed": False, "status": {"code": 409, "reason": "Conflict", "message": "it is in use"}}
    if path == "reason-only":
        return {"allowed": False, "status": {"reason": "Forbidden"}}
    if path == "warn":
        return {"allowed": True, "warnings": ["mind the gap"]}
    return {"allowed": True}


class WebhookServer:
    """An HTTPS webhook on 127.0.0.1:<free port>; ``url(path)`` is what a configuration names."""

    def __init__(self, base: Path, dns_names: tuple[str, ...] = ()) -> None:
        self.ca, self._cert, self._key = make_ca_and_cert(base, "127.0.0.1", dns_names)
        self.port = free_port()
        self.reviews: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_bundle(self) -> str:
        import base64

        return base64.b64encode(self.ca.read_bytes()).decode()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path}"

    def received(self, path: str) -> list[dict[str, Any]]:
        """The ``request`` parts of the reviews ``path`` received so far."""
        return [r.get("request") or {} for r in self.reviews[path]]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        review = await request.json()
        self.reviews[path].append(review)
        req = review.get("request") or {}
        if path == "slow":
            await asyncio.sleep(SLOW)
        if path == "wrong-uid":
            return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                      "response": {"uid": "not-the-request's", "allowed": True}})
        response = {"uid": req.get("uid", ""), **_answer(path, req)}
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": response})

    def start(self) -> WebhookServer:
        ready = threading.Event()

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/{path}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self._cert, self._key)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ctx).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="test-webhook", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the test webhook did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None


def wait_reviews(server: WebhookServer, path: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(server.reviews[path]) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} got {len(server.reviews[path])} reviews, expected {count}")
        time.sleep(0.02)
    return server.received(path)
