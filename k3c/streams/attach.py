"""``attach``: the container's own stdio, relayed between the client and CRI's attach streams.

Only containerd's CRI plugin holds the container's stdio (it copies output to the log file and to every
attached client), so k3c asks CRI for attach URLs and relays frames (upstream: ``v4.channel.k8s.io``):

- output: an upstream with stdout/stderr; with a tty it also carries stdin and resizes (CRI wants stdin
  beside a tty). If the container keeps stdin open (``docker run -d -i``), this upstream asks for stdin
  too, even when nothing is written to it: containerd takes an attach without stdin as one whose stdin
  ended at once, and for a container that is not ``stdin_once`` that ends the attach's output (measured:
  no output at all). Held open and unwritten, that stdin ends only when the attach does;
- input without a tty: a second upstream carrying only stdin. v4 cannot say "end of input" except by
  closing, so the client's EOF (v5's close frame) closes this upstream alone, and CRI then closes the
  container's stdin if it is ``stdin_once`` (``docker run -i``) while the output keeps flowing;
- k3c's signal channel (``--sig-proxy``) becomes Tasks.Kill of the container's init process;
- the final Status carries the container's exit code (CRI's attach only says "Success"); once the
  operator has removed the exited container, the code comes from the object's status.

Two things take the output from the container's log file (followed) instead of a live upstream:

- a ``stdin_once`` container without a tty: containerd 1.6 treats any attach without stdin as "stdin
  ended" and closes such a container's stdin at once (measured), so no output-only upstream may be
  opened on it. Its log lines arrive within ~50 ms; a line without its newline waits for it.
- a replay: ``k3c run`` attaches around the start, and CRI cannot attach before a start the way dockerd
  does. So an attach that arrives while the container is starting waits for it, and such an attach (or
  one asking for docker's ``logs=1``) shows the output from the container's first line on: nothing
  printed before the attach was in place is lost, and a container that already finished still shows
  its output and exit code. A running tty container is relayed live even then, because CRI writes a
  terminal's unfinished lines (prompts) to the log late.

If the client leaves first (detach), the upstreams are closed and the container runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from k3c.cri.errors import RuntimeCallError
from k3c.cri.runtime import CRIClient, pb
from k3c.cri.tasks import TasksClient

from . import protocol
from .channels import ChannelSocket, Frame
from .containers import RuntimeContainer
from .logs import LogOptions, read_log

#: How long to wait, once the output ended, for the container's exit to be known.
EXIT_WAIT = 5.0

Upstream = aiohttp.ClientWebSocketResponse


def signal_number(name: bytes) -> int | None:
    """``SIGINT``/``INT``/``2`` → 2; None for anything else."""
    text = name.decode(errors="replace").strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except (KeyError, ValueError):
        return None


class AttachSession:
    """One attach stream.

    ``exit_code`` returns the container's exit code once known (None until then; LookupError if it never
    will be); ``log_path`` is where its output is logged; ``replay`` takes the output from the log.
    """

    def __init__(
        self, cri: CRIClient, tasks: TasksClient, rc: RuntimeContainer, sock: ChannelSocket, *,
        stdin: bool, stdout: bool, stderr: bool, log_path: str,
        exit_code: Callable[[], Awaitable[int | None]], replay: bool = False,
    ) -> None:
        self.cri = cri
        self.tasks = tasks
        self.rc = rc
        self.sock = sock
        self.tty = bool(rc.config.get("tty"))
        self.stdin = stdin and bool(rc.config.get("stdin"))
        self.stdout, self.stderr = stdout, stderr and not self.tty
        self.log_path = log_path
        self.exit_code = exit_code
        self.replay = replay
        self.live = rc.running and (self.tty or not (replay or rc.config.get("stdin_once")))
        self._output: Upstream | None = None
        self._input: Upstream | None = None

    async def run(self) -> None:
        """Relay until the container's output ends (then report its exit) or the client leaves."""
        async with aiohttp.ClientSession() as http:
            try:
                await self._open_upstreams(http)
            except (RuntimeCallError, aiohttp.ClientError) as err:
                await self._finish(protocol.failure(f"cannot attach to the container: {err}"))
                return
            try:
                await self._relay()
            finally:
                for up in (self._output, self._input):
                    if up is not None:
                        await up.close()

    async def _open_upstreams(self, http: aiohttp.ClientSession) -> None:
        if self.live:  # with stdin whenever the container has one open (see the module docstring)
            self._output = await self._connect(http, bool(self.rc.config.get("stdin")), self.stdout, self.stderr)
        if self.stdin and not self.tty and self.rc.running:
            self._input = await self._connect(http, True, False, False)

    async def _connect(self, http: aiohttp.ClientSession, stdin: bool, stdout: bool, stderr: bool) -> Upstream:
        url = await self.cri.attach(pb.AttachRequest(
            container_id=self.rc.id, stdin=stdin, stdout=stdout, stderr=stderr, tty=self.tty))
        return await http.ws_connect(url, protocols=(protocol.V4,), max_msg_size=0)

    async def _relay(self) -> None:
        source = self._from_upstream(self._output) if self._output is not None else self._from_log()
        output = asyncio.create_task(source)
        client = asyncio.create_task(self._from_client())
        try:
            await asyncio.wait({output, client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client
        if not output.done():  # the client left: let the container run on
            output.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await output
            return
        await self._finish(await self._exit_status(output.result()))

    async def _from_upstream(self, upstream: Upstream) -> dict[str, Any] | None:
        """Forward live output; returns the upstream's own Status (if it sent one) when it closes."""
        status = None
        async for msg in upstream:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel in (protocol.STDOUT, protocol.STDERR):
                await self.sock.send(channel, data)
            elif channel == protocol.ERROR:
                status = protocol.decode_status(data, protocol.V4)
        return status

    async def _from_log(self) -> dict[str, Any] | None:
        """Forward the logged output (a replay: from the container's first line; else from now),
        following it until the container stops."""
        channels = frozenset(c for c, on in ((protocol.STDOUT, self.stdout), (protocol.STDERR, self.stderr)) if on)
        if self.replay:
            options = LogOptions(follow=True, channels=channels, since_ns=self.rc.created_at or None)
        else:
            options = LogOptions(follow=True, channels=channels, tail=0)
        async for channel, data in read_log(self.log_path, options, self._still_running):
            await self.sock.send(channel, data)
        return None

    async def _still_running(self) -> bool:
        try:
            state = (await self.cri.container_status(self.rc.id)).status.state
        except RuntimeCallError:
            return False
        return state in (pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING)

    async def _from_client(self) -> None:
        async for frame in self.sock.frames():
            await self._on_frame(frame)

    async def _on_frame(self, frame: Frame) -> None:
        if frame.channel == protocol.STDIN and self.stdin:
            await _send(self._output if self.tty else self._input, frame)
        elif frame.channel == protocol.RESIZE and self.tty:
            await _send(self._output, frame)
        elif frame.channel == protocol.CLOSE and frame.data[:1] == bytes((protocol.STDIN,)):
            if self._input is not None:  # CRI closes the container's stdin if it is stdin_once
                await self._input.close()
        elif frame.channel == protocol.SIGNAL:
            signum = signal_number(frame.data)
            if signum is not None:
                with contextlib.suppress(RuntimeCallError):
                    await self.tasks.kill(self.rc.id, signum)

    async def _exit_status(self, upstream_status: dict[str, Any] | None) -> dict[str, Any] | None:
        """The container's exit as a Status once known; else what the upstream said (None: nothing)."""
        if upstream_status is not None and upstream_status.get("status") != "Success":
            return upstream_status
        deadline = time.monotonic() + EXIT_WAIT
        while time.monotonic() < deadline:
            try:
                code = await self.exit_code()
            except LookupError:  # the container and its object are gone: the caller asks the object's events
                return None
            except RuntimeCallError:
                code = None
            if code is not None:
                return protocol.exit_code_status(code)
            await asyncio.sleep(0.02)
        return upstream_status

    async def _finish(self, status: dict[str, Any] | None) -> None:
        if status is not None:
            with contextlib.suppress(ConnectionError):
                await self.sock.send_status(status)
        await self.sock.close()


async def _send(upstream: Upstream | None, frame: Frame) -> None:
    if upstream is not None and not upstream.closed:
        with contextlib.suppress(ConnectionError):
            await upstream.send_bytes(bytes((frame.channel,)) + frame.data)
