"""containerd's events for the whole operator process: one subscription, routed by topic to its consumers.

Each consumer (the container controller for ``/tasks/…``, the image controller for ``/images/…``) names
the topics it wants and has two hooks: :meth:`EventConsumer.handle_event`, called for each of its events
in order, and :meth:`EventConsumer.catch_up`, called after a resubscription for what happened while no
subscription was live (missed exits, images changed meanwhile).

Start-up is two steps so nothing slips through: :meth:`EventFeed.open` makes the subscription live
(:meth:`~k3c.cri.events.EventStream.ready`) before the consumers list containerd's state, and
:meth:`EventFeed.start` begins delivering afterwards (events of the meantime wait in the stream's queue).

The loop survives anything: an ended stream, containerd gone, or an exception from a consumer is logged,
the stream is closed (a half-open one too), and the feed subscribes again with back-off, then calls every
consumer's ``catch_up``. Handlers run one at a time on the loop, so they must be quick (a containerd read
at most); a failed handler costs a resubscription and a catch-up, which repairs what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from k3c.cri.errors import RuntimeCallError
from k3c.cri.events import ContainerdEvent, EventStream, EventSubscriber

log = logging.getLogger(__name__)

#: Seconds before each resubscription attempt: 0.5 doubling to 8, back to the start once one succeeds.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


class EventConsumer(Protocol):
    #: topics wanted: exact (``/tasks/exit``) or a prefix ending in ``/`` (``/images/``)
    event_topics: tuple[str, ...]

    async def handle_event(self, event: ContainerdEvent) -> None: ...

    async def catch_up(self) -> None: ...


def wants(consumer: EventConsumer, topic: str) -> bool:
    return any(topic == t or (t.endswith("/") and topic.startswith(t)) for t in consumer.event_topics)


def topic_filters(consumers: Sequence[EventConsumer]) -> list[str]:
    """containerd filter terms (OR-ed) for every topic any consumer wants."""
    topics = sorted({t for c in consumers for t in c.event_topics})
    return [f'topic~="^{t}"' if t.endswith("/") else f'topic=="{t}"' for t in topics]


class EventFeed:
    def __init__(self, subscriber: EventSubscriber, consumers: Sequence[EventConsumer],
                 wait_ready: Callable[[], Awaitable[object]], delays: Sequence[float] = RETRY_DELAYS) -> None:
        self.subscriber = subscriber
        self.consumers = list(consumers)
        self.filters = topic_filters(self.consumers)
        self._wait_ready = wait_ready  #: returns once containerd answers again (raises if not yet)
        self.delays = tuple(delays)
        self.stream: EventStream | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Subscribe and wait until the subscription is live."""
        self.stream = self.subscriber.subscribe(self.filters)
        try:
            await self.stream.ready()
        except BaseException:
            await self._close_stream()
            raise

    def start(self) -> None:
        """Deliver events from now on (after :meth:`open` and after the consumers' start-up listing)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="containerd-events")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_stream()

    async def _run(self) -> None:
        while True:
            try:
                assert self.stream is not None
                async for event in self.stream:
                    await self._dispatch(event)
                log.warning("containerd event stream ended; resubscribing")
            except RuntimeCallError as err:
                log.warning("containerd event stream ended (%s); resubscribing", err)
            except Exception:
                log.exception("handling containerd events failed; resubscribing")
            await self._close_stream()
            await self._resubscribe()

    async def _dispatch(self, event: ContainerdEvent) -> None:
        for consumer in self.consumers:
            if wants(consumer, event.topic):
                await consumer.handle_event(event)

    async def _resubscribe(self) -> None:
        """A live subscription again (retried with back-off), then every consumer's catch-up."""
        for attempt in itertools.count():
            await asyncio.sleep(self.delays[min(attempt, len(self.delays) - 1)])
            try:
                await self._wait_ready()
                await self.open()
                for consumer in self.consumers:
                    await consumer.catch_up()
            except Exception as err:
                log.warning("containerd events: not back yet (%s: %s)", type(err).__name__, err)
                await self._close_stream()
                continue
            log.info("containerd event stream resubscribed")
            return

    async def _close_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close()
