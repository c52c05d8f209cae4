"""A single-threaded websocket client: one TLS socket, websockets' Sans-I/O protocol and ``select()``.

Why not ``websockets.sync``: it reads in a background thread while the caller writes from another, i.e.
two threads drive one TLS connection at once. CPython's ``ssl`` does not serialise that, and with TLS 1.3
(whose session tickets arrive just after the handshake, while the request is being written) the upgrade
request was occasionally lost: the CLI then waited for an answer the server never got (about one first
connection in a hundred here). With one thread owning the socket that cannot happen, and stdin, resizes
and signals are multiplexed in the same ``select()`` loop (see :mod:`k3c.streams.client`).

The socket is non-blocking once the handshake is done; writes are queued and flushed as the socket
accepts them, so a slow peer never blocks reading its output (no deadlock when both directions are busy).
"""

from __future__ import annotations

import select
import socket
import ssl
import time
import urllib.parse

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

#: Bytes handed to the TLS layer per write (the same bytes are retried after a would-block).
WRITE_CHUNK = 64 * 1024
#: Queued output above which callers should stop producing (e.g. stop reading stdin) until it drains.
BACKLOG_LIMIT = 1024 * 1024

_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP error (its body usually a ``metav1.Status``)."""

    def __init__(self, status_code: int, body: bytes | bytearray) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.body = body


class ChannelConnection:
    """An open websocket. Use :meth:`open`; all methods are for one thread."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self.subprotocol: str | None = protocol.subprotocol
        self._out = bytearray()
        self._inflight: bytes | None = None
        self._messages: list[bytes] = []
        self._partial: bytearray | None = None
        self._eof = False

    # ---- opening ----

    @classmethod
    def open(
        cls, url: str, *, ssl_context: ssl.SSLContext | None, headers: dict[str, str], subprotocols: list[str],
        timeout: float,
    ) -> ChannelConnection:
        """Connect and upgrade; HandshakeRefused for an HTTP error, OSError/TimeoutError otherwise."""
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        sock = socket.create_connection((parts.hostname, parts.port or (443 if secure else 80)), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            if secure:
                ctx = ssl_context or ssl.create_default_context()
                sock = ctx.wrap_socket(sock, server_hostname=parts.hostname)
            protocol = ClientProtocol(parse_uri(url), subprotocols=[Subprotocol(p) for p in subprotocols],
                                      max_size=None)
            conn = cls(sock, protocol)
            conn._handshake(headers, time.monotonic() + timeout)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return conn

    def _handshake(self, headers: dict[str, str], deadline: float) -> None:
        request = self.protocol.connect()
        for key, value in headers.items():
            request.headers[key] = value
        self.protocol.send_request(request)
        for data in self.protocol.data_to_send():
            self.sock.sendall(data)
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.sock.recv(65536)
            if chunk:
                self.protocol.receive_data(chunk)
            else:
                self.protocol.receive_eof()
            response = self._take_response()
            if response is not None:
                break
            if not chunk:
                raise ConnectionError("the server closed the connection during the websocket handshake")
        if self.protocol.handshake_exc is not None:
            raise HandshakeRefused(response.status_code, response.body or b"")
        self.subprotocol = self.protocol.subprotocol

    def _take_response(self) -> Response | None:
        response = None
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                response = event
            else:
                self._on_frame(event)
        return response

    # ---- state ----

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def closed(self) -> bool:
        """The stream is over: the close handshake happened or the server went away."""
        return self._eof or self.protocol.state is State.CLOSED

    @property
    def wants_write(self) -> bool:
        return bool(self._out)

    @property
    def backlogged(self) -> bool:
        return len(self._out) > BACKLOG_LIMIT

    @property
    def has_buffered(self) -> bool:
        """Decrypted bytes are waiting inside the TLS layer (``select()`` cannot see them)."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    # ---- sending ----

    def send(self, data: bytes) -> None:
        """Queue one binary message (flushed by :meth:`flush`)."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_binary(data)
            self._queue()

    def _queue(self) -> None:
        for data in self.protocol.data_to_send():
            self._out += data

    def flush(self) -> None:
        """Write as much queued output as the socket takes now."""
        while self._out:
            chunk = self._inflight or bytes(self._out[:WRITE_CHUNK])
            try:
                sent = self.sock.send(chunk)
            except _WOULD_BLOCK:
                self._inflight = chunk  # TLS wants the very same bytes again
                return
            except OSError:
                self._eof = True
                self._out.clear()
                return
            self._inflight = None
            del self._out[:sent]

    def flush_all(self, timeout: float) -> None:
        """Block (up to ``timeout``) until queued output is written."""
        deadline = time.monotonic() + timeout
        while self._out and not self._eof and (left := deadline - time.monotonic()) > 0:
            select.select([], [self.sock], [], left)
            self.flush()

    # ---- receiving ----

    def receive(self) -> list[bytes]:
        """Complete messages readable now (without blocking); replies (pong, close) are queued."""
        while not self._eof:
            try:
                chunk = self.sock.recv(65536)
            except _WOULD_BLOCK:
                break
            except OSError:
                chunk = b""
            if chunk:
                self.protocol.receive_data(chunk)
            else:
                self.protocol.receive_eof()
                self._eof = True
        for event in self.protocol.events_received():
            self._on_frame(event)
        self._queue()
        messages, self._messages = self._messages, []
        return messages

    def _on_frame(self, frame: object) -> None:
        opcode = getattr(frame, "opcode", None)
        data = bytes(getattr(frame, "data", b""))
        fin = bool(getattr(frame, "fin", True))
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self._partial = bytearray(data)
        elif opcode is Opcode.CONT and self._partial is not None:
            self._partial += data
        else:
            return  # control frames: the protocol answers pings and closes itself
        if fin:
            self._messages.append(bytes(self._partial))
            self._partial = None

    # ---- closing ----

    def close(self, timeout: float = 2.0) -> None:
        """Say goodbye (close frame, flushed briefly) and close the socket."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self._queue()
        self.flush_all(timeout)
        self.sock.close()

    def __enter__(self) -> ChannelConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
