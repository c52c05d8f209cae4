"""Named pipes for an exec process's stdio, created by k3c and opened by containerd's shim.

containerd's Tasks.Exec takes FIFO *paths*; the shim opens them when the process starts and copies between
them and the process. Two details make this reliable without blocking opens or lost bytes:

- stdout/stderr: k3c opens the read end non-blocking *and* a spare write end, so reading before the shim
  has connected waits (EAGAIN) instead of seeing end-of-file. Once the process has exited, the spare end
  is closed; end-of-file then arrives when the shim has copied the last byte.
- stdin: opened read-write, so the pipe exists (and buffers what the client sends early) before the shim
  opens it. Closing it is only EOF for the process together with Tasks.CloseIO (the shim keeps its own
  write end open until then).

Everything lives in one private temporary directory that :meth:`ExecFifos.close` removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path


async def _ready(fd: int, *, write: bool) -> None:
    """Wait until ``fd`` is readable (or writable) in the running loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def read(fd: int, size: int = 64 * 1024) -> bytes:
    """Read from a non-blocking fd, waiting for data; b'' at end-of-file."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            await _ready(fd, write=False)


async def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a non-blocking fd, waiting while the pipe is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, write=True)


class ExecFifos:
    """stdin/stdout/stderr FIFOs of one exec process (each optional) in a private directory."""

    def __init__(self, base_dir: str | None, *, stdin: bool, stdout: bool, stderr: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="k3c-exec-", dir=base_dir))
        self._fds: dict[str, int] = {}
        self._spares: list[int] = []
        try:
            if stdin:
                self._make("stdin")
                self._fds["stdin"] = os.open(self.dir / "stdin", os.O_RDWR | os.O_NONBLOCK)
            for name, wanted in (("stdout", stdout), ("stderr", stderr)):
                if wanted:
                    self._make(name)
                    self._fds[name] = os.open(self.dir / name, os.O_RDONLY | os.O_NONBLOCK)
                    self._spares.append(os.open(self.dir / name, os.O_WRONLY | os.O_NONBLOCK))
        except BaseException:
            self.close()
            raise

    def _make(self, name: str) -> None:
        os.mkfifo(self.dir / name, 0o600)

    def path(self, name: str) -> str:
        """The FIFO's path for the shim, or '' if that stream is not wanted."""
        return str(self.dir / name) if (self.dir / name).exists() else ""

    def fd(self, name: str) -> int | None:
        """k3c's end of a FIFO (None if not wanted or already closed)."""
        return self._fds.get(name)

    def close_stdin(self) -> None:
        """Drop k3c's end of stdin (the process sees EOF once the shim's CloseIO follows)."""
        fd = self._fds.pop("stdin", None)
        if fd is not None:
            os.close(fd)

    def release_outputs(self) -> None:
        """Close the spare write ends: reads end at EOF once the shim has written everything."""
        for fd in self._spares:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._spares.clear()

    def close(self) -> None:
        """Close every fd and remove the directory."""
        self.release_outputs()
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ExecFifos:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
