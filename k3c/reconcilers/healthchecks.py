"""Health checks (docker's HEALTHCHECK and ``--health-*``): one probe loop per running container that has one.

The check is the image's HEALTHCHECK with ``spec.healthcheck`` merged over it field by field
(:func:`resolve`). While the container runs, its loop runs the test through CRI's ExecSync every interval,
keeps docker's state machine (:func:`next_state`: ``starting`` until the first success, ``unhealthy`` after
``retries`` failures in a row, failures in the start period not counted) and writes it to ``status.health``
(docker inspect's ``State.Health``). A change to healthy or unhealthy is also a Kubernetes Event, reasons
``HealthStatusHealthy``/``HealthStatusUnhealthy`` (docker's ``health_status`` event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from k3c.api import HEALTH_EVENT_REASONS
from k3c.cri.errors import RuntimeCallError
from k3c.cri.runtime import CRIClient
from k3c.reconcilers.statuses import HealthCheckResult, HealthStatus
from k3c.timefmt import NS, now_micro, parse_duration_ns

log = logging.getLogger(__name__)

#: docker's defaults (a zero or absent value means these).
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
#: docker keeps the last five results, each output cut at 4 KiB.
KEPT_RESULTS = 5
MAX_OUTPUT = 4096


class HealthCheckError(ValueError):
    """A health check the spec or image describes wrongly (bad test form, bad duration)."""


@dataclass(frozen=True)
class HealthCheck:
    argv: list[str]
    interval: float
    timeout: float
    start_period: float
    retries: int


def _seconds(own: Any, image_ns: Any, default: float, what: str) -> float:
    if own:
        try:
            value = parse_duration_ns(str(own)) / NS
        except ValueError:
            raise HealthCheckError(f"healthcheck.{what}: not a duration: {own!r}") from None
        if value:
            return value
    return float(image_ns) / NS if image_ns else default


def resolve(spec: dict[str, Any], image_config: dict[str, Any]) -> HealthCheck | None:
    """The container's check: ``spec.healthcheck`` over the image's HEALTHCHECK; None if there is none."""
    image = image_config.get("Healthcheck") or {}
    own = spec.get("healthcheck") or {}
    test = list(own.get("test") or image.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD" and len(test) > 1:
        argv = test[1:]
    elif test[0] == "CMD-SHELL" and len(test) == 2:
        argv = ["/bin/sh", "-c", test[1]]
    else:
        raise HealthCheckError(f"healthcheck.test: {test!r} is not [CMD, prog, args...], [CMD-SHELL, command] or "
                               "[NONE]")
    return HealthCheck(
        argv=argv, interval=_seconds(own.get("interval"), image.get("Interval"), DEFAULT_INTERVAL, "interval"),
        timeout=_seconds(own.get("timeout"), image.get("Timeout"), DEFAULT_TIMEOUT, "timeout"),
        start_period=_seconds(own.get("startPeriod"), image.get("StartPeriod"), 0.0, "startPeriod"),
        retries=int(own.get("retries") or image.get("Retries") or DEFAULT_RETRIES))


def initial_state() -> HealthStatus:
    return {"status": "starting", "failingStreak": 0, "log": []}


def next_state(state: HealthStatus, result: HealthCheckResult, in_start_period: bool, retries: int) -> HealthStatus:
    """docker's rules: a success makes it healthy; failures count only after the start period, and
    ``retries`` of them in a row make it unhealthy."""
    log_ = [*state["log"], result][-KEPT_RESULTS:]
    if result["exitCode"] == 0:
        return {"status": "healthy", "failingStreak": 0, "log": log_}
    if in_start_period:
        return {"status": state["status"], "failingStreak": state["failingStreak"], "log": log_}
    streak = state["failingStreak"] + 1
    return {"status": "unhealthy" if streak >= retries else state["status"], "failingStreak": streak, "log": log_}


#: Writes ``status.health`` of the object (uid, state); returns False if the object is gone.
WriteHealth = Callable[[dict[str, Any], HealthStatus], Awaitable[bool]]
#: Records a Kubernetes Event for the object (obj, reason, message, warning).
RecordEvent = Callable[[dict[str, Any], str, str, bool], None]


class HealthProbes:
    """The probe loops of this operator's containers, by object uid."""

    def __init__(self, cri: CRIClient, write: WriteHealth, record_event: RecordEvent) -> None:
        self.cri = cri
        self.write = write
        self.record_event = record_event
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, obj: dict[str, Any], container_id: str, check: HealthCheck) -> None:
        uid = obj["metadata"]["uid"]
        self.stop(uid)
        self.tasks[uid] = asyncio.create_task(self._run(obj, container_id, check), name=f"health-{uid}")

    def stop(self, uid: str) -> None:
        task = self.tasks.pop(uid, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, obj: dict[str, Any], container_id: str, check: HealthCheck) -> None:
        started = time.monotonic()
        state = initial_state()
        if not await self.write(obj, state):
            return
        while True:
            await asyncio.sleep(check.interval)
            result = await self._probe(container_id, check)
            previous = state["status"]
            state = next_state(state, result, time.monotonic() - started < check.start_period, check.retries)
            if not await self.write(obj, state):
                return
            if state["status"] != previous and state["status"] in HEALTH_EVENT_REASONS:
                self.record_event(obj, HEALTH_EVENT_REASONS[state["status"]], f"health_status: {state['status']}",
                                  state["status"] == "unhealthy")

    async def _probe(self, container_id: str, check: HealthCheck) -> HealthCheckResult:
        start = now_micro()
        try:
            resp = await asyncio.wait_for(
                self.cri.exec_sync(container_id, check.argv, timeout=math.ceil(check.timeout)),
                check.timeout + 5)
            code, output = resp.exit_code, (resp.stdout + resp.stderr).decode(errors="replace")
        except (RuntimeCallError, TimeoutError) as err:
            timed_out = isinstance(err, TimeoutError) or "timeout" in str(err).lower()
            code = -1
            output = (f"Health check exceeded timeout ({check.timeout:g}s)" if timed_out
                      else f"cannot run the health check: {getattr(err, 'details', '') or err}")
        return {"start": start, "end": now_micro(), "exitCode": code, "output": output[:MAX_OUTPUT]}
