"""HTTP/1.1 to the local k3c API server's unix socket, without :mod:`http.client`.

Why: importing http.client brings the email package and ssl (OpenSSL's libraries), ~25 ms of every local
command's start on a 2-core machine: half of what a `docker ps` takes in all. A command on the machine
running k3c talks to its API server over ``k3c.sock`` in plain HTTP, and only needs what that server
(aiohttp) answers: a status line, headers, and a body framed by Content-Length, chunked, or ended by the
close. HTTPS, archives and uploads still go through http.client (:mod:`k3c.kubeclient` imports it then).

The interface is the part of :class:`http.client.HTTPConnection` the JSON client uses (``request``,
``getresponse``, ``close``, ``sock``), so one client serves both transports.
"""

from __future__ import annotations

import re
import socket

#: what may not appear in a header (a request target may not hold a space either): as http.client refuses
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: limits on what the server may send before a body (it is k3c's own, but a bug must not exhaust memory)
MAX_LINE = 65536
MAX_HEADERS = 200


class ProtocolError(ConnectionError):
    """The answer was not HTTP/1.1 as this client reads it."""


class Response:
    """One response; its body is read with :meth:`read` (all) or :meth:`readline` (streams, e.g. a watch)."""

    def __init__(self, reader: _Buffered, status: int, reason: str,
                 headers: dict[str, str], head_request: bool) -> None:
        self._r = reader
        self.status = status
        self.reason = reason
        self.headers = headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left: int | None = None  # bytes left of a Content-Length body (None: chunked or until close)
        if head_request or status in (204, 304) or 100 <= status < 200:
            self._left, self._chunked = 0, False
        elif not self._chunked and length is not None:
            try:
                self._left = int(length)
            except ValueError:
                raise ProtocolError(f"invalid Content-Length {length!r}") from None
        self._chunk_left = 0  # bytes left of the current chunk
        self._pending = b""  # decoded bytes not yet handed out (readline keeps what follows a newline)
        self.complete = False  # the whole body was read: the connection may serve another request
        self.will_close = headers.get("connection", "").lower() == "close" or (
            not self._chunked and self._left is None)

    def _next(self) -> bytes:
        """The next piece of the decoded body; b"" at its end."""
        if self.complete:
            return b""
        if self._left is not None:
            data = self._r.read(min(self._left, 65536)) if self._left else b""
            if self._left and not data:
                raise ProtocolError("connection closed before the end of the body")
            self._left -= len(data)
            self.complete = self._left == 0
            return data
        if self._chunked:
            return self._next_chunk()
        data = self._r.read(65536)  # until the server closes
        self.complete = not data
        return data

    def _next_chunk(self) -> bytes:
        if self._chunk_left == 0:
            size_line = _line(self._r).split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"invalid chunk size {size_line[:20]!r}") from None
            if self._chunk_left == 0:
                while _line(self._r) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self.complete = True
                return b""
        data = self._r.read(min(self._chunk_left, 65536))
        if not data:
            raise ProtocolError("connection closed inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            _line(self._r)  # the CRLF after the chunk
        return data

    def read(self) -> bytes:
        parts = [self._pending]
        self._pending = b""
        while piece := self._next():
            parts.append(piece)
        return b"".join(parts)

    def readline(self) -> bytes:
        while b"\n" not in self._pending:
            piece = self._next()
            if not piece:
                line, self._pending = self._pending, b""
                return line
            self._pending += piece
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"


class _Buffered:
    """A socket read through one buffer: headers by line, the body in pieces."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")

    def readline(self, limit: int) -> bytes:
        return self._file.readline(limit)

    def read(self, n: int) -> bytes:
        return self._file.read1(n)

    def close(self) -> None:
        self._file.close()


def _line(reader: _Buffered) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("header line too long")
    return line


def open_socket(path: str, timeout: float | None) -> socket.socket:
    """A stream socket connected to the unix socket at ``path`` (closed again if the connect fails)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class UnixConnection:
    """One kept-alive HTTP/1.1 connection to a unix socket, opened on the first request."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._reader: _Buffered | None = None
        self._response: Response | None = None
        self._head = False

    def connect(self) -> None:
        sock = open_socket(self.path, self.timeout)
        self.sock, self._reader = sock, _Buffered(sock)

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> None:
        """Send a request; a connection whose last answer was not read to its end is replaced first."""
        fields = [("Host", "localhost"), *(headers or {}).items()]
        if " " in url or _CONTROL.search(url) or any(_CONTROL.search(f"{k}{v}") for k, v in fields):
            raise ValueError(f"control characters in the request to the API server: {url[:60]!r}")
        previous = self._response
        if previous is not None and (not previous.complete or previous.will_close):
            self.close()
        self._response = None
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        lines = [f"{method} {url} HTTP/1.1", *(f"{k}: {v}" for k, v in fields)]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        self._head = method == "HEAD"

    def getresponse(self) -> Response:
        """The answer's status and headers (its body is the response's to read). An answer that is not
        HTTP closes the connection: what follows on it cannot be trusted to frame the next one."""
        try:
            return self._read_head()
        except ProtocolError:
            self.close()
            raise

    def _read_head(self) -> Response:
        assert self._reader is not None, "request() first"
        status_line = _line(self._reader)
        if not status_line:
            self.close()
            raise ConnectionResetError("the API server closed the connection without an answer")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {status_line[:40]!r}")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = _line(self._reader)
            if line in (b"\r\n", b"\n", b""):
                break
            key, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"invalid header line {line[:40]!r}")
            headers[key.strip().lower()] = value.strip()
        else:
            raise ProtocolError("too many headers")
        self._response = Response(self._reader, int(code), reason, headers, self._head)
        return self._response

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._response = None
