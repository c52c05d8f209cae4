"""The CLI's side of logs, exec and attach: a blocking channel-websocket client over the kubeconfig.

Blocking on purpose: the CLI is one short-lived process. One thread does everything in a ``select()``
loop (:mod:`k3c.streams.wsclient` explains why not a reader thread): frames from the server go to
stdout/stderr, local stdin goes to the server, and signal handlers (SIGWINCH, proxied signals) only
write a byte into a pipe the loop watches, so they never touch the socket themselves.

With a tty the local terminal is put in raw mode (restored on every exit path), its size is sent at
once and again on each SIGWINCH, and - for attach - Ctrl-P Ctrl-Q detaches like docker's default
detach keys. Exit codes come from the Status on channel 3 (see :mod:`k3c.streams.protocol`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, BinaryIO

from k3c.api import LOCAL_CONTAINERS
from k3c.apierrors import APIError, from_status
from k3c.kubeclient import Client
from k3c.timefmt import format_rfc3339_ns, parse_since

from . import protocol, terminal
from .detachkeys import DetachKeys

if TYPE_CHECKING:
    from .wsclient import ChannelConnection

__all__ = ["StreamError", "attach", "attach_from_start", "exec_", "exec_detached", "logs"]

#: Signals ``attach --sig-proxy`` forwards to the container (docker forwards all it can catch).
PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
#: The server pings every 30 s; this long without a byte from it means the connection is dead.
SILENCE_LIMIT = 95.0


class StreamError(Exception):
    """A stream failed; ``exit_code`` is what a docker-compatible CLI exits with."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# ---- connecting ---------------------------------------------------------------------------------


def _connect(
    client: Client, namespace: str, name: str, sub: str, query: list[tuple[str, str]]
) -> ChannelConnection:
    """Open the subresource's websocket; a refused upgrade raises the server's Status as its APIError."""
    from .wsclient import ChannelConnection, HandshakeRefused

    url = client.websocket_url(client.stream_path(LOCAL_CONTAINERS, namespace, name, sub), query)
    headers = {"User-Agent": "k3c"}
    if token := client.conn.bearer():
        headers["Authorization"] = f"Bearer {token}"
    try:
        return ChannelConnection.open(url, ssl_context=client.conn.ssl_context, headers=headers,
                                      subprotocols=list(protocol.PROTOCOLS), timeout=client.timeout)
    except HandshakeRefused as err:
        raise _status_error(err.status_code, err.body) from None
    except OSError as err:
        raise ConnectionError(f"cannot connect to the k3c API at {client.conn.server}: {err}") from None


def _status_error(code: int, body: bytes | bytearray | None) -> APIError:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        doc = {}
    return from_status(code, doc, (body or b"").decode(errors="replace").strip() or f"HTTP {code}")


# ---- the session loop ---------------------------------------------------------------------------


class _Session:
    """Relays one stream until the server ends it (or the user detaches)."""

    def __init__(
        self, conn: ChannelConnection, *, stdout: BinaryIO, stderr: BinaryIO, stdin_fd: int | None = None,
        detach: bool = False,
    ) -> None:
        self.conn = conn
        self.stdout, self.stderr = stdout, stderr
        self.stdin_fd = stdin_fd
        self.detach_keys = DetachKeys() if detach else None
        self.detached = False
        self.status: dict[str, Any] | None = None
        self._signals: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    # called from signal handlers: only poke the loop
    def notify_resize(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def notify_signal(self, signum: int) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"s")

    def send(self, channel: int, data: bytes) -> None:
        self.conn.send(bytes((channel,)) + data)

    def send_size(self) -> None:
        size = terminal.window_size(1, 0, 2)
        if size:
            self.send(protocol.RESIZE, protocol.resize_payload(*size))

    def send_eof(self) -> None:
        """Close the remote stdin (only ``v5.channel.k8s.io`` can express it)."""
        if self.conn.subprotocol == protocol.V5:
            self.send(protocol.CLOSE, bytes((protocol.STDIN,)))

    def run(self) -> dict[str, Any] | None:
        """Loop until the stream ends; returns the Status of channel 3 (None if none came)."""
        last_heard = time.monotonic()
        while not self.conn.closed and not self.detached:
            self.conn.flush()
            readable = self._wait()
            if self.conn in readable or self.conn.has_buffered:
                for message in self.conn.receive():
                    self._on_message(message)
                last_heard = time.monotonic()
            elif not readable and time.monotonic() - last_heard > SILENCE_LIMIT:
                raise StreamError("lost the connection to the k3c API (no answer for a while)", 125)
            if self._wake_r in readable:
                self._on_wake(os.read(self._wake_r, 256))
            if self.stdin_fd is not None and self.stdin_fd in readable:
                self._on_stdin(os.read(self.stdin_fd, 32 * 1024))
        if self.status is None and self.conn.subprotocol == protocol.V1 and not self.detached:
            self.status = protocol.success()  # channel.k8s.io reports only failures
        return self.status

    def _wait(self) -> list[Any]:
        watch: list[Any] = [self.conn, self._wake_r]
        if self.stdin_fd is not None and not self.conn.backlogged:
            watch.append(self.stdin_fd)
        timeout = 0 if self.conn.has_buffered else 30.0
        readable, _, _ = select.select(watch, [self.conn] if self.conn.wants_write else [], [], timeout)
        return readable

    def _on_message(self, data: bytes) -> None:
        if not data:
            return
        if data[0] == protocol.STDOUT:
            _write(self.stdout, data[1:])
        elif data[0] == protocol.STDERR:
            _write(self.stderr, data[1:])
        elif data[0] == protocol.ERROR:
            self.status = protocol.decode_status(data[1:], self.conn.subprotocol)

    def _on_wake(self, commands: bytes) -> None:
        if b"w" in commands:
            self.send_size()
        while self._signals:
            name = signal.Signals(self._signals.popleft()).name
            self.send(protocol.SIGNAL, name.encode())

    def _on_stdin(self, data: bytes) -> None:
        """Forward input; at EOF close the remote stdin and stop reading; detach on the detach keys."""
        if not data:
            self.send_eof()
            self.stdin_fd = None
            return
        if self.detach_keys is not None:
            data, self.detached = self.detach_keys.feed(data)
        if data:
            self.send(protocol.STDIN, data)


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


def _install(signals: tuple[int, ...], handler: Any) -> dict[int, Any]:
    """Install ``handler`` for ``signals`` (main thread only); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in signals}


def _interactive(
    conn: ChannelConnection, *, stdin: bool, tty: bool, detach: bool = False, sig_proxy: bool = False
) -> tuple[dict[str, Any] | None, bool]:
    """Relay a stream with local stdio; returns (final Status or None, whether the user detached)."""
    stdin_fd = sys.stdin.fileno() if stdin else None
    raw = terminal.raw_mode(stdin_fd) if tty and stdin_fd is not None else contextlib.nullcontext()
    session = _Session(conn, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer, stdin_fd=stdin_fd,
                       detach=detach and tty and stdin)
    saved: dict[int, Any] = {}
    try:
        with conn, raw:
            if tty:
                session.send_size()
                saved.update(_install((signal.SIGWINCH,), lambda *_: session.notify_resize()))
            if sig_proxy and not tty:
                saved.update(_install(PROXIED_SIGNALS, lambda signum, _frame: session.notify_signal(signum)))
            status = session.run()
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)
        session.close()
    return status, session.detached


def _failure(status: dict[str, Any] | None, what: str) -> StreamError:
    if status is None:
        return StreamError(f"the {what} stream ended unexpectedly", 125)
    return StreamError(str(status.get("message") or f"{what} failed"), 125)


def logs(
    client: Client,
    namespace: str,
    name: str,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: str | None = None,
    timestamps: bool = False,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
) -> None:
    """Write the container's log to ``stdout``/``stderr`` (default: ours), the two streams kept apart.

    ``since`` takes docker's forms (``10m``, ``1h30m``, RFC 3339, a unix timestamp; ValueError if not).
    With ``follow`` it returns once the container has stopped and everything was written.
    """
    query: list[tuple[str, str]] = []
    if follow:
        query.append(("follow", "true"))
    if tail is not None:
        query.append(("tailLines", str(max(tail, 0))))
    if since:
        query.append(("sinceTime", format_rfc3339_ns(parse_since(since))))
    if timestamps:
        query.append(("timestamps", "true"))
    with _connect(client, namespace, name, "log", query) as conn:
        session = _Session(conn, stdout=stdout or sys.stdout.buffer, stderr=stderr or sys.stderr.buffer)
        try:
            status = session.run()
        finally:
            session.close()
    if status is None or status.get("status") != "Success":
        raise _failure(status, "log")


def exec_(
    client: Client,
    namespace: str,
    name: str,
    command: list[str],
    *,
    stdin: bool,
    tty: bool,
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
) -> int:
    """Run ``command`` in the container with our stdio; returns its exit code.

    A command that cannot be started raises StreamError with docker's code: 127 when it does not exist,
    126 otherwise. Problems of the stream itself are StreamError 125; API refusals APIError.
    """
    query = _exec_query(command, env, workdir, user)
    query += [("stdin", _bool(stdin or tty)), ("stdout", "true"), ("stderr", _bool(not tty)), ("tty", _bool(tty))]
    conn = _connect(client, namespace, name, "exec", query)
    status, _ = _interactive(conn, stdin=stdin, tty=tty)
    code = protocol.exit_code_of(status) if status is not None else None
    if code is not None:
        return code
    if status is not None and status.get("reason") != "NonZeroExitCode":
        message = str(status.get("message") or "exec failed")
        raise StreamError(message, protocol.start_failure_code(message, command))
    raise _failure(status, "exec")


def exec_detached(
    client: Client,
    namespace: str,
    name: str,
    command: list[str],
    *,
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
) -> None:
    """``exec -d``: start ``command`` in the background and return once it runs (StreamError if it cannot)."""
    query = [*_exec_query(command, env, workdir, user), ("detach", "true"), ("stdout", "false"), ("stderr", "false")]
    conn = _connect(client, namespace, name, "exec", query)
    status, _ = _interactive(conn, stdin=False, tty=False)
    if status is None or status.get("status") != "Success":
        message = str((status or {}).get("message") or "exec failed")
        raise StreamError(message, protocol.start_failure_code(message, command))


def attach(client: Client, namespace: str, name: str, *, stdin: bool, tty: bool, sig_proxy: bool = True) -> int | None:
    """Attach our stdio to the container's; returns its exit code, or None after a detach (or if the
    stream ended without one, e.g. the object was removed meanwhile: its last state tells).

    ``tty`` must say whether the container has a terminal (its spec's ``tty``): then the local terminal
    goes raw and Ctrl-P Ctrl-Q detaches. Without a tty, ``sig_proxy`` forwards our signals to it.
    """
    return _attach(client, namespace, name, stdin=stdin, tty=tty, sig_proxy=sig_proxy, from_start=False)


def attach_from_start(
    client: Client, namespace: str, name: str, *, stdin: bool, tty: bool, sig_proxy: bool = True
) -> int | None:
    """``attach`` for ``k3c run`` / ``start -a``: the output from the container's first line on.

    CRI cannot attach before the start, so a plain attach made just after creating the object may come
    too late for the first lines, or for the whole of a short-lived container (then it is refused as not
    running). This one (docker's ``attach?logs=1&stream=1``) replays the log and follows it, so nothing is
    lost and a container that already exited still yields its output and exit code. Call it once the
    object's status refers to the container wanted (not a previous run's).
    """
    return _attach(client, namespace, name, stdin=stdin, tty=tty, sig_proxy=sig_proxy, from_start=True)


def _attach(
    client: Client, namespace: str, name: str, *, stdin: bool, tty: bool, sig_proxy: bool, from_start: bool
) -> int | None:
    query = [("stdin", _bool(stdin)), ("stdout", "true"), ("stderr", _bool(not tty))]
    if from_start:
        query.append(("logs", "true"))
    conn = _connect(client, namespace, name, "attach", query)
    status, detached = _interactive(conn, stdin=stdin, tty=tty, detach=True, sig_proxy=sig_proxy)
    if detached:
        return None
    code = protocol.exit_code_of(status) if status is not None else None
    if code is None and status is not None:
        raise _failure(status, "attach")
    return code


def _exec_query(
    command: list[str], env: list[str] | None, workdir: str | None, user: str | None
) -> list[tuple[str, str]]:
    query = [("command", c) for c in command] + [("env", e) for e in env or []]
    if workdir:
        query.append(("workingDir", workdir))
    if user:
        query.append(("user", user))
    return query


def _bool(value: bool) -> str:
    return "true" if value else "false"
