"""Reading a container's CRI log file the way ``kubectl logs`` / ``docker logs`` present it.

containerd writes one entry per line, ``<RFC3339Nano> <stdout|stderr> <F|P> <text>``: ``F`` ends a line of
output, ``P`` is a piece of a longer one (split at 16 KiB) whose newline has not come yet. This module turns
such a file into output chunks tagged with their stream, applying the pods/log options (tail, since,
timestamps, limitBytes, follow). Each stream's lines are reassembled separately, so interleaved partial
lines of stdout and stderr never mix, and ``-t`` timestamps go only at the start of a real line.

Following polls the file for growth and asks the caller whether the container still runs; once it has
stopped and the file has stopped growing, the stream ends. containerd never rotates, but the operator does
when ``logOptions`` ask (``FILE`` renamed to ``FILE.1``, then a fresh ``FILE``): a read takes the rotated
files first (``FILE.N``…``FILE.1``, :func:`log_files`), and a follower that finds ``FILE`` replaced
finishes the old file and goes on with the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from k3c.timefmt import format_rfc3339_ns, parse_rfc3339_ns

from .protocol import STDERR, STDOUT

CHUNK = 64 * 1024
#: How often a follower looks for new bytes, and how often it asks whether the container still runs.
#: The first seconds are polled closely: `k3c run --rm IMG true` is over in ~200 ms, and its CLI waits for
#: this stream to end; later, a long-running container is checked at a cheaper pace.
POLL_INTERVAL = 0.05
STATE_INTERVAL = 0.25
FAST_POLL_INTERVAL = 0.01
FAST_PERIOD = 2.0
#: After the container stopped: how long the file must stay unchanged before the stream ends. CRI reports
#: a container exited only once its output is copied, so this is a margin, not a wait for the copy.
SETTLE_TIME = 0.02

_CHANNELS = {b"stdout": STDOUT, b"stderr": STDERR}


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One parsed line of a CRI log file."""

    time_ns: int
    channel: int  # STDOUT or STDERR
    partial: bool
    text: bytes  # without the newline


@dataclass(frozen=True)
class LogOptions:
    """The pods/log query, decoded. ``channels`` selects stdout/stderr (kube's ``stream`` parameter)."""

    follow: bool = False
    tail: int | None = None
    since_ns: int | None = None
    timestamps: bool = False
    limit_bytes: int | None = None
    channels: frozenset[int] = frozenset({STDOUT, STDERR})


def parse_line(line: bytes) -> LogEntry | None:
    """Parse one line (without its newline); None for anything that is not a CRI log entry."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in _CHANNELS:
        return None
    try:
        time_ns = parse_rfc3339_ns(parts[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    partial = parts[2].split(b":", 1)[0] == b"P"
    return LogEntry(time_ns, _CHANNELS[parts[1]], partial, parts[3] if len(parts) == 4 else b"")


def _reverse_lines(f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Complete lines of ``f`` from the last to the first, with their offsets.

    Text after the last newline is an entry containerd is still writing: it is skipped.
    """
    pos = f.seek(0, os.SEEK_END)
    carry = b""  # the start of the block read before, up to its first newline (included)
    started = False
    while pos > 0:
        step = min(CHUNK, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + carry
        if not started:
            last = buf.rfind(b"\n")
            if last < 0:
                carry = b""
                continue
            buf, started = buf[: last + 1], True
        parts = buf.split(b"\n")[:-1]
        carry = parts.pop(0) + b"\n" if pos > 0 else b""
        offset = pos + len(carry)
        found = []
        for line in parts:
            found.append((offset, line))
            offset += len(line) + 1
        yield from reversed(found)


def tail_offset(f: BinaryIO, lines: int) -> int:
    """Offset where the last ``lines`` lines of output begin (a line ends at an ``F`` entry)."""
    seen = 0
    for offset, line in _reverse_lines(f):
        entry = parse_line(line)
        if entry is not None and not entry.partial:
            seen += 1
            if seen > lines:
                return offset + len(line) + 1
    return 0


def rotated_files(path: str) -> list[str]:
    """``FILE.N``…``FILE.1`` (oldest first) beside ``path``: the parts the operator rotated away."""
    directory, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.([0-9]+)")
    try:
        found = [(int(m.group(1)), e) for e in os.listdir(directory or ".") if (m := pattern.fullmatch(e))]
    except OSError:
        return []
    return [os.path.join(directory, e) for _, e in sorted(found, reverse=True)]


def _output_lines(lines: list[bytes]) -> int:
    return sum(1 for line in lines if (e := parse_line(line)) is not None and not e.partial)


def _last_lines(lines: list[bytes], count: int) -> list[bytes]:
    """The entries of the last ``count`` lines of output among ``lines``."""
    if count <= 0:
        return []
    seen = 0
    for i in range(len(lines) - 1, -1, -1):
        entry = parse_line(lines[i])
        if entry is not None and not entry.partial:
            seen += 1
            if seen > count:
                return lines[i + 1:]
    return lines


def _older_lines(older: list[str], wanted: int | None, current: BinaryIO, offset: int) -> list[bytes]:
    """The rotated files' lines a read shows: all, or with a tail what the current file lacks of it."""
    lines: list[bytes] = []
    for name in older:
        with contextlib.suppress(OSError), open(name, "rb") as f:
            lines.extend(f.read().split(b"\n")[:-1])
    if wanted is None:
        return lines
    here = current.tell()
    current.seek(offset)
    have = _output_lines(current.read().split(b"\n")[:-1])
    current.seek(here)
    return _last_lines(lines, wanted - have)


def _replaced(path: str, f: BinaryIO) -> bool:
    """Whether ``path`` is now another file than the open ``f`` (the operator rotated it)."""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except OSError:
        return False


@dataclass
class LogFormatter:
    """Turns entries into output chunks per the options; keeps per-stream line state between calls."""

    options: LogOptions
    written: int = 0
    _line_start: dict[int, bool] = field(default_factory=lambda: {STDOUT: True, STDERR: True})

    @property
    def exhausted(self) -> bool:
        """True once limitBytes has been reached: nothing more may be sent."""
        return self.options.limit_bytes is not None and self.written >= self.options.limit_bytes

    def render(self, entry: LogEntry) -> bytes:
        """The bytes one entry contributes to its stream (empty if filtered out)."""
        opts = self.options
        if entry.channel not in opts.channels or (opts.since_ns is not None and entry.time_ns < opts.since_ns):
            return b""
        out = entry.text if entry.partial else entry.text + b"\n"
        if opts.timestamps and self._line_start[entry.channel]:
            out = format_rfc3339_ns(entry.time_ns).encode() + b" " + out
        self._line_start[entry.channel] = not entry.partial
        return out

    def feed(self, lines: list[bytes]) -> list[tuple[int, bytes]]:
        """Chunks for complete lines, consecutive output of one stream merged, cut at limitBytes."""
        chunks: list[tuple[int, bytes]] = []
        for line in lines:
            entry = parse_line(line)
            if entry is None or self.exhausted:
                continue
            data = self._limit(self.render(entry))
            if not data:
                continue
            if chunks and chunks[-1][0] == entry.channel:
                chunks[-1] = (entry.channel, chunks[-1][1] + data)
            else:
                chunks.append((entry.channel, data))
        return chunks

    def _limit(self, data: bytes) -> bytes:
        if self.options.limit_bytes is not None:
            data = data[: max(0, self.options.limit_bytes - self.written)]
        self.written += len(data)
        return data


class _Follow:
    """Decides when a follower is done: the container stopped and the file settled (or the client left)."""

    def __init__(self, running: Callable[[], Awaitable[bool]], alive: Callable[[], bool]) -> None:
        self._running = running
        self._alive = alive
        self._checked = 0.0
        self._stopped_at: float | None = None
        self._began = time.monotonic()

    def interval(self) -> float:
        """How long to sleep before looking again: closely at first, then at the usual pace."""
        return FAST_POLL_INTERVAL if time.monotonic() - self._began < FAST_PERIOD else POLL_INTERVAL

    def saw_data(self) -> None:
        if self._stopped_at is not None:
            self._stopped_at = time.monotonic()

    async def done(self) -> bool:
        now = time.monotonic()
        if not self._alive():
            return True
        pace = FAST_POLL_INTERVAL if now - self._began < FAST_PERIOD else STATE_INTERVAL
        if self._stopped_at is None and now - self._checked >= pace:
            self._checked = now
            if not await self._running():
                self._stopped_at = now
        return self._stopped_at is not None and now - self._stopped_at >= SETTLE_TIME


async def read_log(
    path: str,
    options: LogOptions,
    running: Callable[[], Awaitable[bool]],
    alive: Callable[[], bool] = lambda: True,
) -> AsyncIterator[tuple[int, bytes]]:
    """Yield ``(channel, bytes)`` chunks of the log at ``path``; with ``follow``, until the container stops.

    ``running`` tells whether the container may still write; ``alive`` whether the client is still there.
    A missing file reads as empty (containerd creates it at container start).
    """
    fmt = LogFormatter(options)
    follow = _Follow(running, alive)
    older = rotated_files(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        if not older:
            return
        f = open(os.devnull, "rb")
    try:
        if options.tail is not None:
            f.seek(tail_offset(f, options.tail))
        if older:
            for item in fmt.feed(_older_lines(older, options.tail, f, f.tell())):
                yield item
        pending = b""
        while not fmt.exhausted:
            chunk = f.read(CHUNK)
            if chunk:
                follow.saw_data()
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for item in fmt.feed(lines):
                    yield item
            elif options.follow and _replaced(path, f):
                f.close()
                f = open(path, "rb")
            elif not options.follow or await follow.done():
                return
            else:
                await asyncio.sleep(follow.interval())
    finally:
        f.close()
