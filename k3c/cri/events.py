"""containerd's event stream, decoded: how k3c learns of container exits without polling.

containerd publishes every state change (``/tasks/exit``, ``/tasks/start``, ``/containers/create``,
``/images/update`` ...) on its Events service as an envelope whose payload is a ``google.protobuf.Any``.
:class:`EventSubscriber` subscribes (restricted to one containerd namespace, ``k8s.io`` by default, plus
optional topic filters) and yields :class:`ContainerdEvent` with the payload decoded into the generated
message class when k3c knows it (see :data:`PAYLOAD_TYPES`), else left as the raw ``Any``.

A subscription only sees events published after containerd registered it, and gRPC gives no signal for
that. :meth:`EventStream.ready` closes that gap: it publishes a private barrier event and waits until the
stream delivers it, so "subscribe, ready(), then list current state" misses nothing. When containerd
restarts the stream ends with :class:`~k3c.cri.errors.RuntimeUnavailableError`: subscribe again and relist.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import DecodeError, Message

from .channel import CRI_NAMESPACE, ServiceClient, namespace_metadata
from .errors import translate
from .proto import containerd_events_pb2 as events_pb
from .proto import containerd_events_pb2_grpc as events_grpc
from .proto import containerd_image_events_pb2 as image_events_pb
from .proto import containerd_task_events_pb2 as task_events_pb

__all__ = ["PAYLOAD_TYPES", "ContainerdEvent", "EventStream", "EventSubscriber"]

#: Payload message classes by protobuf full name (containerd's ``Any.type_url`` is that bare name).
PAYLOAD_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        task_events_pb.TaskStart,
        task_events_pb.TaskExit,
        task_events_pb.TaskDelete,
        task_events_pb.TaskOOM,
        task_events_pb.TaskPaused,
        task_events_pb.TaskResumed,
        task_events_pb.ContainerCreate,
        task_events_pb.ContainerDelete,
        image_events_pb.ImageCreate,
        image_events_pb.ImageUpdate,
        image_events_pb.ImageDelete,
    )
}

#: Topic of the barrier events :meth:`EventStream.ready` publishes to itself (never yielded).
BARRIER_TOPIC = "/k3c/barrier"


@dataclass(frozen=True, slots=True)
class ContainerdEvent:
    """One containerd event. ``payload`` is the decoded message, or the raw ``Any`` for unknown types."""

    timestamp: dt.datetime
    namespace: str
    topic: str
    payload: Message

    @property
    def known(self) -> bool:
        """True when the payload was decoded into one of :data:`PAYLOAD_TYPES`."""
        return not isinstance(self.payload, any_pb2.Any)


def decode_envelope(envelope: events_pb.Envelope) -> ContainerdEvent:
    """Turn a wire envelope into a :class:`ContainerdEvent`, decoding the payload if its type is known."""
    payload: Message = envelope.event
    type_name = envelope.event.type_url.rsplit("/", 1)[-1]
    cls = PAYLOAD_TYPES.get(type_name)
    if cls is not None:
        msg = cls()
        try:
            msg.ParseFromString(envelope.event.value)
            payload = msg
        except DecodeError:
            pass
    return ContainerdEvent(
        timestamp=envelope.timestamp.ToDatetime(tzinfo=dt.UTC),
        namespace=envelope.namespace,
        topic=envelope.topic,
        payload=payload,
    )


class EventSubscriber(ServiceClient):
    """Subscribes to containerd's Events service on one socket, for one containerd namespace."""

    def __init__(
        self,
        address: str | os.PathLike[str],
        namespace: str = CRI_NAMESPACE,
        *,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        super().__init__(address, channel=channel)
        self.namespace = namespace
        self.stub = events_grpc.EventsStub(self.channel)

    def subscribe(self, topics: Iterable[str] = ()) -> EventStream:
        """A stream of this namespace's events; ``topics`` are containerd filter terms OR-ed together,
        e.g. ``['topic=="/tasks/exit"', 'topic~="/images/"']`` (empty: every topic).

        Call it inside the running event loop that will consume the stream (it starts a reader task).
        """
        ns = f'namespace=="{self.namespace}"'
        terms = list(topics)
        filters = [f"{ns},{t}" for t in terms] if terms else [ns]
        filters.append(f'{ns},topic=="{BARRIER_TOPIC}"')
        return EventStream(self, filters)


class EventStream:
    """An open subscription: async iterator of :class:`ContainerdEvent`, usable as async context manager.

    A background task reads the gRPC stream into an unbounded queue (events are small and k3c consumes
    them promptly), which lets :meth:`ready` see barrier events while the caller is not iterating.
    """

    def __init__(self, subscriber: EventSubscriber, filters: list[str]) -> None:
        self._subscriber = subscriber
        self._call = subscriber.stub.Subscribe(
            events_pb.SubscribeRequest(filters=filters), metadata=namespace_metadata(subscriber.namespace)
        )
        self._queue: asyncio.Queue[ContainerdEvent | BaseException | None] = asyncio.Queue()
        self._barriers: dict[str, asyncio.Future[None]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for envelope in self._call:
                if envelope.topic == BARRIER_TOPIC:
                    token = wrappers_pb2.StringValue()
                    if envelope.event.Unpack(token) and token.value in self._barriers:
                        fut = self._barriers.pop(token.value)
                        if not fut.done():
                            fut.set_result(None)
                    continue
                self._queue.put_nowait(decode_envelope(envelope))
            self._queue.put_nowait(None)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:
                self._queue.put_nowait(None)
            else:
                self._queue.put_nowait(translate("Subscribe", err))
        except asyncio.CancelledError:
            self._queue.put_nowait(None)
            raise
        finally:
            for fut in self._barriers.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("event stream ended"))

    async def ready(self, timeout: float = 5.0) -> None:
        """Return once containerd has registered this subscription (every later event will be seen).

        Publishes a barrier event and waits for it to come back through this stream. The Subscribe call
        may reach containerd after the first Publish, so the barrier is re-published (same token, growing
        interval from 10 ms) until one arrives; raises ``TimeoutError`` after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        token = uuid.uuid4().hex
        fut: asyncio.Future[None] = loop.create_future()
        self._barriers[token] = fut
        any_msg = any_pb2.Any()
        any_msg.Pack(wrappers_pb2.StringValue(value=token))
        req = events_pb.PublishRequest(topic=BARRIER_TOPIC, event=any_msg)
        deadline = loop.time() + timeout
        interval = 0.01
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"event subscription not live after {timeout} s")
                try:
                    await self._subscriber.stub.Publish(
                        req, timeout=remaining, metadata=namespace_metadata(self._subscriber.namespace)
                    )
                except grpc.aio.AioRpcError as err:
                    raise translate("Publish", err) from err
                done, _ = await asyncio.wait({fut}, timeout=min(interval, max(0.0, deadline - loop.time())))
                if done:
                    fut.result()  # raises if the stream ended meanwhile
                    return
                interval = min(interval * 2, 0.5)
        finally:
            self._barriers.pop(token, None)

    def __aiter__(self) -> AsyncIterator[ContainerdEvent]:
        return self

    async def __anext__(self) -> ContainerdEvent:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stay exhausted
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)
            raise item
        return item

    async def close(self) -> None:
        """Cancel the subscription."""
        self._call.cancel()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
