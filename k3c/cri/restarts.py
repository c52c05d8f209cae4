"""Riding out a restart of containerd: a call tried again while containerd does not answer.

The daemon brings a containerd killed with -9 back within a second or two. A clean-up given up on in that
moment would leave something nobody knows about (a sandbox, a snapshot), so clean-ups wait for it, for a
while, rather than fail at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import RuntimeUnavailableError

T = TypeVar("T")


async def while_unavailable(call: Callable[[], Awaitable[T]], patience: float, interval: float = 0.5,
                            give_up: Callable[[], bool] = lambda: False) -> T:
    """``call()``, again every ``interval`` s while containerd is unavailable, for ``patience`` s at most
    (or until ``give_up()`` says so): then its :class:`RuntimeUnavailableError` propagates."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            return await call()
        except RuntimeUnavailableError:
            if give_up() or loop.time() > deadline:
                raise
            await asyncio.sleep(interval)
