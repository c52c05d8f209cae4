"""The CLI's HTTP on the local API socket (k3c.unixhttp) against a real aiohttp server, the kind of server k3c's
API server is: bodies framed by length and chunked, lines across chunk boundaries, kept-alive connections the
server closes, and answers that are not HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from k3c import apierrors, kubeclient
from k3c.unixhttp import ProtocolError, UnixConnection


class Server:
    """An aiohttp app on a unix socket, served from a thread; ``transports`` counts the connections it saw."""

    def __init__(self, path: Path, keepalive: float = 75.0) -> None:
        self.path = path
        self.keepalive = keepalive
        self.transports: set[int] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/obj", self.obj)
        app.router.add_post("/echo", self.echo)
        app.router.add_get("/missing", self.missing)
        app.router.add_get("/watch", self.watch)
        return app

    def _seen(self, request: web.Request) -> None:
        self.transports.add(id(request.transport))

    async def obj(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"kind": "Thing", "items": [{"n": i} for i in range(2000)]})

    async def echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"got": await request.json(), "type": request.content_type})

    async def missing(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                  "code": 404, "message": 'things "x" not found'}, status=404)

    async def watch(self, request: web.Request) -> web.StreamResponse:
        """Chunked, with each event split across two chunks (a line never arrives whole)."""
        self._seen(request)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(int(request.query.get("n", "3"))):
            line = json.dumps({"type": "ADDED", "object": {"n": i}}).encode() + b"\n"
            await resp.write(line[:7])
            await asyncio.sleep(0.01)
            await resp.write(line[7:])
        await resp.write_eof()
        return resp

    def __enter__(self) -> Server:
        self.thread.start()
        runner = web.AppRunner(self.app(), keepalive_timeout=self.keepalive)

        async def start() -> None:
            await runner.setup()
            await web.UnixSite(runner, str(self.path)).start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.runner = runner
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _client(path: Path) -> kubeclient.Client:
    def no_tls() -> kubeclient.ssl.SSLContext:
        raise AssertionError("a unix socket needs no TLS")

    return kubeclient.Client(kubeclient.Connection(server="https://127.0.0.1:6443", token="t0k", namespace="default",
                                                   tls=no_tls, socket_path=str(path)))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path / "api.sock") as s:
        yield s


def test_requests_share_one_kept_alive_connection(server: Server) -> None:
    c = _client(server.path)
    try:
        assert len(c.get("/obj")["items"]) == 2000  # ~20 KB: several reads of the length-framed body
        assert c.request("POST", "/echo", {"a": [1, "ü"]}) == {"got": {"a": [1, "ü"]}, "type": "application/json"}
        with pytest.raises(apierrors.NotFound, match='things "x" not found'):
            c.get("/missing")
        assert c.get("/obj")["kind"] == "Thing"
    finally:
        c.close()
    assert len(server.transports) == 1


def test_watch_lines_arrive_whole_across_chunks(server: Server) -> None:
    c = _client(server.path)
    try:
        events = list(c.watch("/watch", n="4"))
        assert [e["object"]["n"] for e in events] == [0, 1, 2, 3]
        assert [json.loads(line)["object"]["n"] for line in c.lines("/watch", n="2")] == [0, 1]
        assert c.get("/obj")["kind"] == "Thing"  # the connection the lines came on serves the next request
    finally:
        c.close()


def test_a_stream_left_unread_is_not_reused(server: Server) -> None:
    c = _client(server.path)
    try:
        lines = c.lines("/watch", n="50")
        next(lines)
        lines.close()  # stopped early (Ctrl-C): the connection is mid-response
        assert c.get("/obj")["kind"] == "Thing"
    finally:
        c.close()
    assert len(server.transports) == 2


def test_a_connection_the_server_closed_is_opened_again(tmp_path: Path) -> None:
    with Server(tmp_path / "api.sock", keepalive=0.1) as server:
        c = _client(server.path)
        try:
            assert c.get("/obj")["kind"] == "Thing"
            threading.Event().wait(0.5)  # the server closes the idle connection
            assert c.get("/obj")["kind"] == "Thing"
        finally:
            c.close()
        assert len(server.transports) == 2


def _raw_server(path: Path, answer: bytes) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(answer)
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("answer, message", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.1 status line"),
    (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "invalid header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", "closed before the end of the body"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "header line too long"),
])
def test_an_answer_that_is_not_http_is_a_clear_error(tmp_path: Path, answer: bytes, message: str) -> None:
    path = tmp_path / "raw.sock"
    thread = _raw_server(path, answer)
    conn = UnixConnection(str(path), timeout=5)
    try:
        with pytest.raises(ProtocolError, match=message):
            conn.request("GET", "/x")
            conn.getresponse().read()
        if "chunk" not in message and "body" not in message:  # a bad head closes the connection at once
            assert conn.sock is None  # (a bad body is left unread: the next request replaces it)
    finally:
        conn.close()
        thread.join(5)


def test_a_server_that_closes_without_answering_is_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "raw.sock"
    thread = _raw_server(path, b"")
    conn = UnixConnection(str(path), timeout=5)
    try:
        conn.request("GET", "/x")
        with pytest.raises(ConnectionResetError):
            conn.getresponse()
    finally:
        conn.close()
        thread.join(5)


@pytest.mark.parametrize("url, headers", [("/a b", {}), ("/a\r\nX-Evil: 1", {}), ("/ok", {"X": "v\r\nX-Evil: 1"})])
def test_control_characters_are_refused_before_anything_is_sent(server: Server, url: str,
                                                                 headers: dict[str, str]) -> None:
    conn = UnixConnection(str(server.path), timeout=5)
    try:
        with pytest.raises(ValueError, match="control characters"):
            conn.request("GET", url, headers=headers)
    finally:
        conn.close()
    assert not server.transports
