"""``attach``: the container's own stdio, relayed between the client and CRI's attach stream.

Only containerd's CRI plugin holds the container's stdio (it copies output to the log file and to every
attached client), so k3c asks CRI for an attach URL and relays frames both ways: output on channels 1
and 2, stdin and resizes upstream. The upstream speaks ``v4.channel.k8s.io``; what it cannot express is
done through containerd's Tasks service instead:

- closing stdin (v5's close frame) becomes Tasks.CloseIO, for containers whose stdin is ``stdin_once``
  (``docker run -i``: the client's EOF is the container's EOF);
- k3c's signal channel (``--sig-proxy``) becomes Tasks.Kill of the container's init process;
- when the container exits, the final Status carries its exit code (CRI's attach only says "Success").

``k3c run`` attaches to a container the operator is still creating, and CRI cannot attach before a
start the way dockerd does. So an attach that arrives while the container is starting waits for it and
then takes the output from the container's log, from its first line on ("replay", docker's
``attach?logs=1&stream=1``): nothing printed before the attach was in place is lost, and a container that
already finished still shows its output and exit code. Input still goes through CRI. A tty container is
relayed live even then, because CRI writes a terminal's unfinished lines (prompts) to the log late.

If the client leaves first (detach), the upstream stream is closed and the container runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import aiohttp

from k3c.cri.errors import RuntimeCallError
from k3c.cri.runtime import CRIClient, pb
from k3c.cri.tasks import TasksClient

from . import protocol
from .channels import ChannelSocket, Frame
from .containers import RuntimeContainer
from .logs import LogOptions, read_log

#: How long to wait, once the output ended, for containerd to report the container's exit.
EXIT_WAIT = 5.0


def attach_request(rc: RuntimeContainer, stdin: bool, stdout: bool, stderr: bool) -> pb.AttachRequest:
    """CRI's AttachRequest: the tty is the container's; a tty has no separate stderr.

    With a tty, stdin is requested whenever the container has one (CRI loses tty output without it);
    the relay forwards the client's input only if the client asked for stdin.
    """
    tty = bool(rc.config.get("tty"))
    return pb.AttachRequest(
        container_id=rc.id,
        stdin=(stdin or tty) and bool(rc.config.get("stdin")),
        tty=tty,
        stdout=stdout,
        stderr=stderr and not tty,
    )


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
    """One attach stream: output live from CRI (or replayed from the log), input to CRI and containerd."""

    def __init__(
        self, cri: CRIClient, tasks: TasksClient, rc: RuntimeContainer, sock: ChannelSocket,
        *, stdin: bool, stdout: bool, stderr: bool, replay: bool = False,
    ) -> None:
        self.cri = cri
        self.tasks = tasks
        self.rc = rc
        self.sock = sock
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.replay = replay and not (rc.config.get("tty") and rc.running)

    async def run(self) -> None:
        """Relay until the container's output ends (then report its exit) or the client leaves."""
        async with aiohttp.ClientSession() as session:
            upstream = None
            if self._needs_upstream():
                try:
                    url = await self.cri.attach(self._upstream_request())
                    upstream = await session.ws_connect(url, protocols=(protocol.V4,), max_msg_size=0)
                except (RuntimeCallError, aiohttp.ClientError) as err:
                    await self._finish(protocol.failure(f"cannot attach to the container: {err}"))
                    return
            try:
                await self._relay(upstream)
            finally:
                if upstream is not None:
                    await upstream.close()

    def _needs_upstream(self) -> bool:
        if not self.rc.running:
            return False
        return not self.replay or (self.stdin and bool(self.rc.config.get("stdin")))

    def _upstream_request(self) -> pb.AttachRequest:
        if self.replay:  # output comes from the log; CRI only carries stdin
            return attach_request(self.rc, True, False, False)
        return attach_request(self.rc, self.stdin, self.stdout, self.stderr)

    async def _relay(self, upstream: aiohttp.ClientWebSocketResponse | None) -> None:
        source = self._from_log() if self.replay or upstream is None else self._from_upstream(upstream)
        output = asyncio.create_task(source)
        client = asyncio.create_task(self._from_client(upstream))
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

    async def _from_upstream(self, upstream: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
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
        """Forward the container's log from its start, following it until the container stops."""
        channels = frozenset(c for c, on in ((protocol.STDOUT, self.stdout), (protocol.STDERR, self.stderr)) if on)
        async for channel, data in read_log(self.rc.log_path, LogOptions(follow=True, channels=channels),
                                            self._still_running):
            await self.sock.send(channel, data)
        return None

    async def _still_running(self) -> bool:
        try:
            state = (await self.cri.container_status(self.rc.id)).status.state
        except RuntimeCallError:
            return False
        return state in (pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING)

    async def _from_client(self, upstream: aiohttp.ClientWebSocketResponse | None) -> None:
        async for frame in self.sock.frames():
            await self._on_frame(frame, upstream)

    async def _on_frame(self, frame: Frame, upstream: aiohttp.ClientWebSocketResponse | None) -> None:
        if frame.channel in (protocol.STDIN, protocol.CLOSE) and not self.stdin:
            return  # the client did not attach stdin: its EOF is not the container's
        if frame.channel in (protocol.STDIN, protocol.RESIZE):
            if upstream is not None and not upstream.closed:
                with contextlib.suppress(ConnectionError):
                    await upstream.send_bytes(bytes((frame.channel,)) + frame.data)
        elif frame.channel == protocol.CLOSE and frame.data[:1] == bytes((protocol.STDIN,)):
            if self.rc.config.get("stdin_once") and not self.rc.config.get("tty"):  # (see exec: never a tty's)
                with contextlib.suppress(RuntimeCallError):
                    await self.tasks.close_stdin(self.rc.id)
        elif frame.channel == protocol.SIGNAL:
            signum = signal_number(frame.data)
            if signum is not None:
                with contextlib.suppress(RuntimeCallError):
                    await self.tasks.kill(self.rc.id, signum)

    async def _exit_status(self, upstream_status: dict[str, Any] | None) -> dict[str, Any]:
        """The container's exit as a Status once containerd reports it; else what the upstream said."""
        if upstream_status is not None and upstream_status.get("status") != "Success":
            return upstream_status
        deadline = time.monotonic() + EXIT_WAIT
        while time.monotonic() < deadline:
            try:
                st = (await self.cri.container_status(self.rc.id)).status
            except RuntimeCallError:
                break
            if st.state == pb.CONTAINER_EXITED:
                return protocol.exit_code_status(st.exit_code)
            await asyncio.sleep(0.02)
        return upstream_status or protocol.success()

    async def _finish(self, status: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError):
            await self.sock.send_status(status)
        await self.sock.close()
