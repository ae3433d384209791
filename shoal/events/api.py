"""`AsyncEvents` and `Events`: the one API of shoal.events, on any backend.

    bus = Events()             # built-in backend: the control plane at $SHOAL_EVENTS_URL
    bus.publish("orders.created", b'{"id": 7}', key="customer-42")
    sub = bus.subscribe("orders.created", bill, group="billing")
    ...
    sub.stop()

`AsyncEvents` holds the logic (it delegates to a backend: `BuiltinBackend` on the
control plane, `RedisBackend`, (NATS JetStream: planned)); `Events` is its blocking twin, running an
`AsyncEvents` on a loop thread of its own and waiting on each call -- so the two cannot
drift apart. A subscription runs on the loop it was made on: the caller's for
`AsyncEvents.subscribe`, the `Events` thread for `Events.subscribe`. Plain-function
handlers run on worker threads; coroutine handlers on that loop.

The backend is chosen by URL: `redis://...`, or anything else (one or more
`http://host:port`) for the built-in backend on the control plane.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from .errors import InvalidEvent
from .handlers import Handler
from .model import Message, TopicConfig
from .types import GroupInfo, GroupLag, Published, SubscribeOptions

__all__ = ["AsyncEvents", "AsyncSubscription", "Backend", "Events", "Subscription", "backend_for"]

T = TypeVar("T")

ENV_URL = "SHOAL_EVENTS_URL"
DEFAULT_URL = "http://127.0.0.1:7700"


class ConsumerHandle(Protocol):
    @property
    def joined(self) -> asyncio.Event: ...

    @property
    def partitions(self) -> frozenset[int]: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


class Backend(Protocol):
    """What a backend offers; every method may raise `shoal.events.EventsError`."""

    name: str

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> Published: ...

    async def create_topic(self, topic: str, config: TopicConfig) -> TopicConfig: ...

    async def topic_config(self, topic: str, create: bool = True) -> TopicConfig: ...

    async def consumer(
        self, topic: str, handler: Handler, group: str | None, options: SubscribeOptions
    ) -> ConsumerHandle: ...

    async def groups(self, topic: str) -> list[GroupInfo]: ...

    async def lag(self, topic: str, group: str) -> GroupLag: ...

    async def replay(
        self, topic: str, group: str, *, offset: int | None = None, at: float | None = None
    ) -> dict[int, int]: ...

    async def read(self, topic: str, from_offset: int = 0, limit: int = 100) -> list[Message]: ...

    async def close(self) -> None: ...


def backend_for(url: str | Sequence[str] | None = None, **kwargs: Any) -> Backend:
    """The backend a URL names (default: $SHOAL_EVENTS_URL, else the local control plane)."""
    if url is None:
        url = os.environ.get(ENV_URL, DEFAULT_URL)
    first = url if isinstance(url, str) else (url[0] if url else "")
    if first.startswith(("redis://", "rediss://", "unix://")):
        from .redis_backend import RedisBackend

        return RedisBackend(first, **kwargs)
    if first.startswith(("nats://", "tls://")):
        raise InvalidEvent(
            "the NATS JetStream adapter is not built yet (docs/events.md): use the "
            "built-in backend (http://...) or Redis (redis://...)"
        )
    from .builtin import BuiltinBackend

    return BuiltinBackend(url, **kwargs)


class AsyncSubscription:
    """A running subscriber on the loop that made it. `stop()` hands its partitions back
    after the in-flight messages finish, so the group moves on without redelivery."""

    def __init__(self, consumer: ConsumerHandle, task: asyncio.Task[None]) -> None:
        self.consumer, self.task = consumer, task

    @property
    def partitions(self) -> frozenset[int]:
        return self.consumer.partitions

    async def stop(self, timeout: float = 30.0) -> None:
        """Drain and leave; after `timeout` seconds the consumer is cancelled instead
        (what it held is redelivered to the others: nothing is lost, only repeated)."""
        if not self.task.done():
            await self.consumer.stop()
            await asyncio.wait({self.task}, timeout=timeout)
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=5.0)


class AsyncEvents:
    """Publish and subscribe on `backend` (a `Backend`, or a URL for `backend_for`)."""

    def __init__(self, backend: Backend | str | Sequence[str] | None = None, **kwargs: Any) -> None:
        if backend is None or isinstance(backend, str | list | tuple):
            backend = backend_for(backend, **kwargs)
        self.backend: Backend = backend  # type: ignore[assignment]
        self._subscriptions: set[AsyncSubscription] = set()

    async def __aenter__(self) -> AsyncEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for sub in list(self._subscriptions):
            await sub.stop()
        await self.backend.close()

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        id: str | None = None,
    ) -> Published:
        """Publish `payload` to `topic`; returns once the backend has it durably (the
        built-in backend: fsync'd on a majority). `key` keeps an order (and a consumer) per
        key; `id` makes a retried publish a no-op while the first is retained."""
        return await self.backend.publish(topic, payload, key=key, headers=headers, id=id)

    async def create_topic(self, topic: str, config: TopicConfig | None = None) -> TopicConfig:
        return await self.backend.create_topic(topic, config or TopicConfig())

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        group: str | None = None,
        *,
        options: SubscribeOptions | None = None,
        join_timeout: float = 30.0,
        **option_fields: Any,
    ) -> AsyncSubscription:
        """Run `handler` on the messages of `topic`: each message to one member of
        `group` (every group gets every message), or, without a group, every message to
        this subscriber. Returns once it has joined; it runs until `stop()`."""
        if options is None:
            options = SubscribeOptions(**option_fields)
        elif option_fields:
            raise InvalidEvent("give options= or option fields, not both")
        consumer = await self.backend.consumer(topic, handler, group, options)
        task = asyncio.get_running_loop().create_task(consumer.run())
        joined = asyncio.ensure_future(consumer.joined.wait())
        done, _ = await asyncio.wait(
            {task, joined}, timeout=join_timeout, return_when="FIRST_COMPLETED"
        )
        if joined not in done:
            joined.cancel()
            if task.done():
                task.result()  # raises what stopped it
            await consumer.stop()
            raise TimeoutError(f"could not join {topic!r} within {join_timeout}s")
        sub = AsyncSubscription(consumer, task)
        self._subscriptions.add(sub)
        task.add_done_callback(lambda _: self._subscriptions.discard(sub))
        return sub

    async def groups(self, topic: str) -> list[GroupInfo]:
        return await self.backend.groups(topic)

    async def lag(self, topic: str, group: str) -> GroupLag:
        return await self.backend.lag(topic, group)

    async def replay(
        self, topic: str, group: str, *, offset: int | None = None, at: float | None = None
    ) -> dict[int, int]:
        return await self.backend.replay(topic, group, offset=offset, at=at)

    async def read(self, topic: str, from_offset: int = 0, limit: int = 100) -> list[Message]:
        return await self.backend.read(topic, from_offset, limit)

    async def tail(self, topic: str, from_offset: int | None = None) -> AsyncIterator[Message]:
        """Every message from now (or `from_offset`) as it arrives, until cancelled."""
        queue: asyncio.Queue[Message] = asyncio.Queue()

        async def put(message: Message) -> None:
            await queue.put(message)

        sub = await self.subscribe(topic, put, from_offset=from_offset, max_in_flight=1)
        try:
            while True:
                yield await queue.get()
        finally:
            await sub.stop()


class Subscription:
    """The blocking twin of `AsyncSubscription`."""

    def __init__(self, events: Events, sub: AsyncSubscription) -> None:
        self._events, self._sub = events, sub

    @property
    def partitions(self) -> frozenset[int]:
        return self._sub.partitions

    def stop(self) -> None:
        self._events._run(self._sub.stop())


class Events:
    """The blocking API: an `AsyncEvents` on a loop thread of its own (thread-safe)."""

    def __init__(self, backend: Backend | str | Sequence[str] | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="shoal-events", daemon=True
        )
        self._thread.start()

        async def make() -> AsyncEvents:
            return AsyncEvents(backend, **kwargs)

        self.aio = self._run(make())

    def _run(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def __enter__(self) -> Events:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def shutdown() -> None:
            await self.aio.aclose()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        try:
            self._run(shutdown(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        id: str | None = None,
    ) -> Published:
        return self._run(self.aio.publish(topic, payload, key, headers, id=id))

    def create_topic(self, topic: str, config: TopicConfig | None = None) -> TopicConfig:
        return self._run(self.aio.create_topic(topic, config))

    def subscribe(
        self, topic: str, handler: Handler, group: str | None = None, **options: Any
    ) -> Subscription:
        return Subscription(self, self._run(self.aio.subscribe(topic, handler, group, **options)))

    def groups(self, topic: str) -> list[GroupInfo]:
        return self._run(self.aio.groups(topic))

    def lag(self, topic: str, group: str) -> GroupLag:
        return self._run(self.aio.lag(topic, group))

    def replay(
        self, topic: str, group: str, *, offset: int | None = None, at: float | None = None
    ) -> dict[int, int]:
        return self._run(self.aio.replay(topic, group, offset=offset, at=at))

    def read(self, topic: str, from_offset: int = 0, limit: int = 100) -> list[Message]:
        return self._run(self.aio.read(topic, from_offset, limit))
