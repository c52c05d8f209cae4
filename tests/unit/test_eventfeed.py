"""The operator's one containerd event loop (k3c/reconcilers/eventfeed.py): routing by topic, and surviving
what would end it.

A consumer raising an arbitrary exception, or a resubscription whose stream never goes live, are faults a
real containerd cannot be made to produce on demand, so the subscriber here is a test double that hands out
scripted streams and records what is subscribed and closed. The real subscription is exercised end to end
by tests/test_operator_wiring.py and the daemon tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import wrappers_pb2

from k3c.cri.events import ContainerdEvent
from k3c.reconcilers.eventfeed import EventFeed, topic_filters


def event(topic: str) -> ContainerdEvent:
    return ContainerdEvent(dt.datetime.now(dt.UTC), "k8s.io", topic, wrappers_pb2.StringValue(value=topic))


class FakeStream:
    def __init__(self, filters: list[str], ready_error: BaseException | None = None) -> None:
        self.filters = filters
        self.ready_error = ready_error
        self.queue: asyncio.Queue[ContainerdEvent | None] = asyncio.Queue()
        self.closed = False

    async def ready(self) -> None:
        if self.ready_error is not None:
            raise self.ready_error

    def __aiter__(self) -> AsyncIterator[ContainerdEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ContainerdEvent]:
        while (item := await self.queue.get()) is not None:
            yield item

    async def close(self) -> None:
        self.closed = True


class FakeSubscriber:
    """Hands out streams; ``ready_errors`` are raised by the ready() of the next streams, in order."""

    def __init__(self, ready_errors: list[BaseException | None] | None = None) -> None:
        self.streams: list[FakeStream] = []
        self.ready_errors = list(ready_errors or [])

    def subscribe(self, filters: list[str]) -> FakeStream:
        stream = FakeStream(filters, self.ready_errors.pop(0) if self.ready_errors else None)
        self.streams.append(stream)
        return stream


class Consumer:
    def __init__(self, topics: tuple[str, ...], fail_on: str | None = None, catch_up_failures: int = 0) -> None:
        self.event_topics = topics
        self.fail_on = fail_on
        self.catch_up_failures = catch_up_failures
        self.seen: list[str] = []
        self.catch_ups = 0

    async def handle_event(self, ev: ContainerdEvent) -> None:
        self.seen.append(ev.topic)
        if ev.topic == self.fail_on:
            self.fail_on = None
            raise KeyError("a bug in a consumer")

    async def catch_up(self) -> None:
        self.catch_ups += 1
        if self.catch_up_failures:
            self.catch_up_failures -= 1
            raise RuntimeError("containerd still busy")


async def _until(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def _ready() -> None:
    return None


def test_filters_cover_every_consumer_once() -> None:
    tasks, images = Consumer(("/tasks/exit", "/tasks/oom")), Consumer(("/images/",))
    assert topic_filters([tasks, images, Consumer(("/tasks/exit",))]) == [
        'topic~="^/images/"', 'topic=="/tasks/exit"', 'topic=="/tasks/oom"']


def test_routes_by_topic() -> None:
    async def scenario() -> None:
        tasks, images = Consumer(("/tasks/exit", "/tasks/oom")), Consumer(("/images/",))
        sub = FakeSubscriber()
        feed = EventFeed(sub, [tasks, images], _ready, delays=(0.0,))  # type: ignore[arg-type]
        await feed.open()
        feed.start()
        for topic in ("/tasks/exit", "/images/update", "/tasks/start", "/tasks/oom", "/images/delete"):
            sub.streams[0].queue.put_nowait(event(topic))
        await _until(lambda: len(images.seen) == 2 and len(tasks.seen) == 2, "both consumers")
        assert tasks.seen == ["/tasks/exit", "/tasks/oom"]  # /tasks/start is nobody's
        assert images.seen == ["/images/update", "/images/delete"]
        assert len(sub.streams) == 1 and tasks.catch_ups == images.catch_ups == 0
        await feed.close()
        assert sub.streams[0].closed

    asyncio.run(scenario())


def test_survives_a_consumer_exception_and_resubscribes() -> None:
    async def scenario() -> None:
        tasks = Consumer(("/tasks/exit",), fail_on="/tasks/exit")
        images = Consumer(("/images/",), catch_up_failures=1)
        # the first resubscription's stream never goes live: it must be closed, not left half open
        sub = FakeSubscriber(ready_errors=[None, TimeoutError("not live")])
        feed = EventFeed(sub, [tasks, images], _ready, delays=(0.0, 0.01))  # type: ignore[arg-type]
        await feed.open()
        feed.start()
        sub.streams[0].queue.put_nowait(event("/tasks/exit"))  # the consumer raises KeyError
        # stream 1: not live; stream 2: live, but images' catch-up fails once; stream 3: all good
        await _until(lambda: len(sub.streams) == 4 and feed.stream is sub.streams[3], "a live resubscription")
        await _until(lambda: images.catch_ups == 2, "the catch-ups")
        assert [s.closed for s in sub.streams] == [True, True, True, False]
        assert tasks.catch_ups == 2 and images.catch_ups == 2  # on stream 2 (failed) and stream 3
        sub.streams[3].queue.put_nowait(event("/tasks/exit"))
        sub.streams[3].queue.put_nowait(event("/images/create"))
        await _until(lambda: images.seen == ["/images/create"], "delivery after resubscribing")
        assert tasks.seen == ["/tasks/exit", "/tasks/exit"]
        await feed.close()
        assert sub.streams[3].closed

    asyncio.run(scenario())


def test_an_ended_stream_is_resubscribed() -> None:
    async def scenario() -> None:
        tasks = Consumer(("/tasks/exit",))
        sub = FakeSubscriber()
        feed = EventFeed(sub, [tasks], _ready, delays=(0.0,))  # type: ignore[arg-type]
        await feed.open()
        feed.start()
        sub.streams[0].queue.put_nowait(None)  # containerd went away: the stream ends
        await _until(lambda: len(sub.streams) == 2 and tasks.catch_ups == 1, "a resubscription")
        assert sub.streams[0].closed and not sub.streams[1].closed
        await feed.close()

    asyncio.run(scenario())
