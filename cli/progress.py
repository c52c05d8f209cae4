"""The image pull display of `k3c run`/`start`: the operator pulls, status carries the progress, we draw it.

Why here and lazy: rich costs ~50 ms to import, so it is loaded only once a pull is actually under way and
stderr is a terminal; otherwise plain lines (only when something changed) keep logs and pipes readable.
Status fields read (all optional, whichever the operator writes): status.pull / status.progress as a dict
with current|completed|downloaded and total bytes (or a string), and status.message.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from k3c.units import human_size

_DONE_KEYS = ("current", "completed", "downloaded", "done", "bytesDone", "bytes")
_TOTAL_KEYS = ("total", "size", "bytesTotal")


@dataclass
class PullState:
    current: int | None
    total: int | None
    text: str


def pull_state(status: dict[str, Any]) -> PullState:
    raw = status.get("pull") if status.get("pull") is not None else status.get("progress")
    current = total = None
    text = status.get("message") or ""
    if isinstance(raw, dict):
        current = next((int(raw[k]) for k in _DONE_KEYS if isinstance(raw.get(k), (int, float))), None)
        total = next((int(raw[k]) for k in _TOTAL_KEYS if isinstance(raw.get(k), (int, float))), None)
        text = raw.get("message") or raw.get("status") or text
    elif isinstance(raw, str) and raw:
        text = raw
    return PullState(current, total, text)




@dataclass
class PullProgress:
    """Follows status updates; draws only while the phase is Pulling."""

    image: str
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    raw: bool = False  # the terminal is in raw mode (run -it): plain lines ending in \r\n
    pulled: bool = False
    _last: str = ""
    _bar: Any = None
    _task: Any = None

    def update(self, obj: dict[str, Any]) -> None:
        status = obj.get("status") or {}
        if status.get("phase") != "Pulling":
            self.close()
            return
        if not self.pulled:
            self.pulled = True
            self._line(f"Unable to find image '{self.image}' locally")
        state = pull_state(status)
        if self.stream.isatty() and not self.raw:
            self._draw_rich(state)
        else:
            self._draw_line(state)

    def _draw_line(self, state: PullState) -> None:
        line = state.text or "Pulling"
        if state.total:
            line = f"{line} {human_size(state.current or 0)}/{human_size(state.total)}".strip()
        if line != self._last:
            self._last = line
            self._line(line)

    def _line(self, text: str) -> None:
        self.stream.write(text + ("\r\n" if self.raw else "\n"))
        self.stream.flush()

    def _draw_rich(self, state: PullState) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"Pulling {self.image}", total=None)
        self._bar.update(self._task, completed=state.current or 0, total=state.total,
                         description=f"Pulling {self.image}" + (f": {state.text}" if state.text else ""))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def finish(self, ok: bool) -> None:
        self.close()
        if self.pulled and ok:
            self._line(f"Status: Downloaded newer image for {self.image}")
