"""``exec``: a new process in a running container, streamed over the channel websocket.

CRI's Exec can only run a command with the container's own environment, directory and user, so k3c
goes one level down, to containerd's Tasks service, exactly as ``docker exec`` does through dockerd:

1. the process spec is the container's own (capabilities, rlimits, AppArmor... from its OCI runtime spec)
   with the command, ``-e`` variables (added to the container's), ``-w`` directory, ``-u`` user (names
   looked up in the container's /etc files), ``TERM=xterm`` and the initial console size for ``-t``;
2. Tasks.Exec with FIFOs k3c made (:mod:`k3c.streams.fifos`), Tasks.Start, then client frames are
   pumped into stdin / ResizePty / CloseIO and the FIFOs' output onto channels 1 and 2;
3. Tasks.Wait gives the exit code, reported on channel 3 like the kubelet does; a command that could not
   start is a Failure Status carrying the runtime's message (the CLI maps it to 126/127).

The exec process never outlives its stream: if the client goes away it is killed, and in every case it is
deleted from the shim and its FIFOs removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.cri.errors import RuntimeCallError
from k3c.cri.tasks import TasksClient

from . import fifos, protocol
from .channels import ChannelSocket, Frame
from .containers import RuntimeContainer
from .users import UserError, resolve_user

log = logging.getLogger(__name__)

#: How long a tty exec waits for the client's first size before starting (clients send it at once).
FIRST_SIZE_WAIT = 0.3
#: After the exit: how long output may keep draining (a background child can hold the pipe open).
DRAIN_TIMEOUT = 2.0
CLEANUP_TIMEOUT = 5.0


class ExecError(Exception):
    """The exec could not be set up; the message is for the user."""


@dataclass
class ExecRequest:
    """The exec query: the command and what the client wants wired (kube's PodExecOptions + k3c's)."""

    command: list[str]
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """``KEY=VALUE`` lists merged by key, later entries winning, order of first appearance kept."""
    merged: dict[str, str] = {}
    for item in [*base, *extra]:
        merged[item.split("=", 1)[0]] = item
    return list(merged.values())


def build_process(rc: RuntimeContainer, req: ExecRequest, size: tuple[int, int] | None) -> dict[str, Any]:
    """The OCI process spec of the exec, derived from the container's own process."""
    base = rc.spec.get("process")
    if not base:
        raise ExecError(f"container {rc.name} has no runtime spec to exec with")
    proc: dict[str, Any] = copy.deepcopy(base)
    proc["args"] = list(req.command)
    proc["terminal"] = req.tty
    proc["env"] = merge_env(proc.get("env") or [], (["TERM=xterm"] if req.tty else []) + req.env)
    if req.working_dir:
        proc["cwd"] = req.working_dir
    if req.user:
        try:
            proc["user"] = resolve_user(Path(f"/proc/{rc.pid}/root"), req.user)
        except UserError as err:
            raise ExecError(str(err)) from None
    proc.pop("consoleSize", None)
    if req.tty and size:
        proc["consoleSize"] = {"width": size[0], "height": size[1]}
    return proc


class ExecSession:
    """One exec stream: runs the process and relays its IO until it exits or the client leaves."""

    def __init__(
        self, tasks: TasksClient, rc: RuntimeContainer, req: ExecRequest, sock: ChannelSocket, fifo_dir: str | None
    ) -> None:
        self.tasks = tasks
        self.rc = rc
        self.req = req
        self.sock = sock
        self.fifo_dir = fifo_dir
        self.exec_id = "k3c-exec-" + secrets.token_hex(8)
        self.size: tuple[int, int] | None = None
        self._got_size = asyncio.Event()
        self._started = False
        self._stdin_eof = False
        self._fifos: fifos.ExecFifos | None = None

    async def run(self) -> None:
        """Serve the stream to its end, always leaving no process, FIFO or directory behind."""
        req = self.req
        try:
            with fifos.ExecFifos(
                self.fifo_dir, stdin=req.stdin, stdout=req.stdout, stderr=req.stderr and not req.tty
            ) as fifo_set:
                status = await self._with_reader(fifo_set)
        except ExecError as err:
            status = protocol.failure(str(err))
        except RuntimeCallError as err:
            status = protocol.failure(err.details or str(err))
        except OSError as err:
            status = protocol.failure(f"cannot set up the exec's stdio: {err}")
        if status is not None:
            with contextlib.suppress(ConnectionError):
                await self.sock.send_status(status)
        await self.sock.close()

    async def _with_reader(self, fifo_set: fifos.ExecFifos) -> dict[str, Any] | None:
        """Run the exec while a task reads client frames; the task ends before the FIFOs close."""
        self._fifos = fifo_set
        reader = asyncio.create_task(self._read_client())
        try:
            return await self._execute(fifo_set, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._fifos = None

    async def _execute(self, fifo_set: fifos.ExecFifos, reader: asyncio.Task[None]) -> dict[str, Any] | None:
        req = self.req
        if req.tty:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._got_size.wait(), FIRST_SIZE_WAIT)
        process = build_process(self.rc, req, self.size)
        await self.tasks.exec(
            self.rc.id, self.exec_id, process, terminal=req.tty,
            stdin=fifo_set.path("stdin"), stdout=fifo_set.path("stdout"), stderr=fifo_set.path("stderr"),
        )
        try:
            return await self._start_and_wait(fifo_set, reader)
        finally:
            await self._cleanup()

    async def _start_and_wait(self, fifo_set: fifos.ExecFifos, reader: asyncio.Task[None]) -> dict[str, Any] | None:
        try:
            await self.tasks.start(self.rc.id, self.exec_id)
        except RuntimeCallError as err:
            return protocol.failure(err.details or str(err))
        self._started = True
        await self._after_start()
        pumps = [
            asyncio.create_task(self._pump(fd, channel))
            for name, channel in (("stdout", protocol.STDOUT), ("stderr", protocol.STDERR))
            if (fd := fifo_set.fd(name)) is not None
        ]
        waiter = asyncio.create_task(self.tasks.wait(self.rc.id, self.exec_id))
        try:
            await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():  # the client left: the process must not outlive the stream
                await self._kill()
                return None
            fifo_set.release_outputs()
            await asyncio.wait(pumps, timeout=DRAIN_TIMEOUT)
            return protocol.exit_code_status(waiter.result(), self.req.command)
        finally:
            for task in [*pumps, waiter]:
                task.cancel()
            await asyncio.gather(*pumps, waiter, return_exceptions=True)

    async def _after_start(self) -> None:
        """Apply what the client sent before the process existed: a newer size, an early stdin EOF."""
        if self.req.tty and self.size:
            await self._resize(self.size)
        if self._stdin_eof:
            await self._close_stdin()

    async def _pump(self, fd: int, channel: int) -> None:
        """Copy one output FIFO to its channel until EOF (or the client is gone)."""
        with contextlib.suppress(ConnectionError):
            while data := await fifos.read(fd):
                await self.sock.send(channel, data)

    async def _read_client(self) -> None:
        """Route client frames: stdin bytes, resizes, v5's close of stdin. Returns when the client closes."""
        async for frame in self.sock.frames():
            await self._on_frame(frame)

    async def _on_frame(self, frame: Frame) -> None:
        if frame.channel == protocol.STDIN:
            fd = self._fifos.fd("stdin") if self._fifos else None
            if fd is not None and not self._stdin_eof:
                try:
                    await fifos.write_all(fd, frame.data)
                except OSError:  # the process is gone or closed its stdin: drop further input
                    self._stdin_eof = True
        elif frame.channel == protocol.RESIZE:
            size = frame.resize()
            if size:
                self.size = size
                self._got_size.set()
                if self._started:
                    await self._resize(size)
        elif frame.channel == protocol.CLOSE and frame.data[:1] == bytes((protocol.STDIN,)) and not self.req.tty:
            # (a terminal's input is never closed: the shim would shut the console down, output and all;
            # end-of-input on a tty is the ^D the user types)
            self._stdin_eof = True
            if self._started:
                await self._close_stdin()

    async def _resize(self, size: tuple[int, int]) -> None:
        with contextlib.suppress(RuntimeCallError):
            await self.tasks.resize_pty(self.rc.id, self.exec_id, *size)

    async def _close_stdin(self) -> None:
        if self._fifos is not None and self._fifos.fd("stdin") is not None:
            self._fifos.close_stdin()
            with contextlib.suppress(RuntimeCallError):
                await self.tasks.close_stdin(self.rc.id, self.exec_id)

    async def _kill(self) -> None:
        with contextlib.suppress(RuntimeCallError):
            await self.tasks.kill(self.rc.id, signal.SIGKILL, self.exec_id)
        with contextlib.suppress(RuntimeCallError, TimeoutError):
            await asyncio.wait_for(self.tasks.wait(self.rc.id, self.exec_id), CLEANUP_TIMEOUT)

    async def _cleanup(self) -> None:
        """Delete the exec from the shim (killing it first if it still runs); shielded from cancellation."""

        async def delete() -> None:
            try:
                await asyncio.wait_for(self.tasks.delete_process(self.rc.id, self.exec_id), CLEANUP_TIMEOUT)
            except RuntimeCallError as err:
                if "running" in err.details:
                    await self._kill()
                    with contextlib.suppress(RuntimeCallError, TimeoutError):
                        await asyncio.wait_for(self.tasks.delete_process(self.rc.id, self.exec_id), CLEANUP_TIMEOUT)
            except TimeoutError:
                log.warning("exec %s in %s: DeleteProcess timed out", self.exec_id, self.rc.id)

        await asyncio.shield(delete())
