"""The local terminal of an interactive ``exec -it`` / ``attach``: raw mode and its size.

In raw mode every key (Ctrl-C, Ctrl-D, arrows) goes to the remote terminal instead of being acted on
locally; the remote pseudo-terminal does the line editing and echo. Whatever happens, the terminal must
come back as it was, so raw mode is a context manager restoring the saved attributes on any exit.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from collections.abc import Iterator


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in raw mode for the block; no-op if it is not a terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def window_size(*fds: int) -> tuple[int, int] | None:
    """(columns, rows) of the first of ``fds`` that is a terminal with a known size."""
    for fd in fds:
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.columns > 0 and size.lines > 0:
            return size.columns, size.lines
    return None
