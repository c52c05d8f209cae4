"""Running a kopf registry as a process: kopf's settings, the ready file and the logging of
`python -m k3c.operator` (kopf's own CLI, `kopf run`, is not used: it would read none of our flags)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import kopf

#: Loggers that would drown the reconcilers' own lines at INFO.
NOISY = ("kopf", "grpc", "asyncio", "aiohttp")


def settings() -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.posting.enabled = False  # the reconcilers post their own, meaningful Events
    s.watching.connect_timeout = 10
    s.watching.server_timeout = 300
    s.networking.request_timeout = 60
    s.scanning.disabled = True  # the resources are known; no need to scan namespaces and CRDs
    return s


async def run_registry(registry: kopf.OperatorRegistry, ready_file: Path | None) -> None:
    """Run kopf until it stops; ``ready_file`` gets our PID once every watch is up, which is how the
    daemon and the tests know the operator is serving."""
    ready = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=registry, settings=settings(), standalone=True,
                                                 clusterwide=True, ready_flag=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({operator, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set() and ready_file is not None:
        ready_file.write_text(f"{os.getpid()}\n")
    waiter.cancel()
    await operator


def main(parse_args: Callable[[list[str] | None], argparse.Namespace],
         run: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], argv: list[str] | None = None) -> None:
    """A kopf operator's ``main``: its flags (each has ``--log-level``), the logging, then ``run``."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    asyncio.run(run(args))


def configure_logging(level_name: str) -> None:
    level = getattr(logging, level_name.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
