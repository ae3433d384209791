"""`AsyncEvents` and `Events`: the one API of shoal.events, on any backend.

    bus = Events()             # built-in backend: the control plane at $SHOAL_EVENTS_URL
    bus.publish("orders.created", b'{"id": 7}', key="customer-42")
    sub = bus.subscribe("orders.created", bill, group="billing")
    ...
    sub.stop()

`AsyncEvents` holds the logic (it delegates to a backend: `BuiltinBackend` on the
control plane, `RedisBackend`, `NatsBackend`); `Events` is its blocking twin, running an
`AsyncEvents` on a loop thread of its own and waiting on each call -- so the two cannot
drift apart. A subscription runs on the loop it was made on: the caller's for
`AsyncEvents.subscribe`, the `Events` thread for `Events.subscribe`. Plain-function
handlers run on worker threads; coroutine handlers on that loop.

The backend is chosen by URL: `redis://...`, `nats://...` (NATS JetStream; several
servers comma-separated), or anything else (one or more `http://host:port`) for the
built-in backend on the control plane.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import InvalidEvent
from .handlers import Handler
from .model import Message, TopicConfig
from .types import GroupInfo, GroupLag, Published, SubscribeOptions

if TYPE_CHECKING:
    from shoal.client import AsyncControlPlane

__all__ = ["AsyncEvents", "AsyncSubscription", "Backend", "Events", "Subscription", "backend_for"]

T = TypeVar("T")

ENV_URL = "SHOAL_EVENTS_URL"
DEFAULT_URL = "http://127.0.0.1:7700"


class ConsumerHandle(Protocol):
    options: SubscribeOptions

    @property
    def joined(self) -> asyncio.Event: ...

    @property
    def partitions(self) -> frozenset[int]: ...

    async def run(self) -> None: ...

    async def stop(self, drain_timeout: float | None = None) -> None: ...


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


def backend_for(
    url: str | Sequence[str] | None = None,
    *,
    control_plane: AsyncControlPlane | None = None,
    **kwargs: Any,
) -> Backend:
    """The backend a URL names (default: $SHOAL_EVENTS_URL, else the local control plane).
    `control_plane`: an `AsyncControlPlane` the built-in backend uses instead of making
    its own from the URL's endpoints (and leaves open on close); ignored when the URL
    names a broker, so a service can pass its own client and still be pointed at Redis
    or NATS by $SHOAL_EVENTS_URL. The client must belong to the loop the events run on."""
    if url is None:
        url = os.environ.get(ENV_URL, DEFAULT_URL if control_plane is None else "")
    first = url if isinstance(url, str) else (url[0] if url else "")
    if first.startswith(("redis://", "rediss://", "unix://")):
        from .redis_backend import RedisBackend

        return RedisBackend(first, **kwargs)
    if first.startswith(("nats://", "tls://")):
        from .nats_backend import NatsBackend

        return NatsBackend(url if isinstance(url, str) else ",".join(url), **kwargs)
    from .builtin import BuiltinBackend

    if control_plane is not None:
        return BuiltinBackend(control_plane=control_plane, **kwargs)
    return BuiltinBackend(url, **kwargs)


STOP_RESERVE = 1.0  # of a stop's time, kept for the commit and hand-back after the drain
CANCEL_GRACE = 1.0  # after a stop's time: the cancelled consumer's last clean-up
CLOSE_GRACE = 5.0  # closing: how long more a cancelled consumer may take before the backend goes


class AsyncSubscription:
    """A running subscriber on `loop` (the loop that made it). `stop()` hands its
    partitions back after the in-flight messages finish, so the group moves on without
    redelivery; `stop_from_thread()` does the same from any other thread."""

    def __init__(self, consumer: ConsumerHandle, task: asyncio.Task[None]) -> None:
        self.consumer, self.task = consumer, task
        self.loop = task.get_loop()

    @property
    def partitions(self) -> frozenset[int]:
        return self.consumer.partitions

    @property
    def joined(self) -> bool:
        """True while it is a member of its group (or, without a group, reading)."""
        return self.consumer.joined.is_set()

    @property
    def running(self) -> bool:
        return not self.task.done()

    def _bound(self, timeout: float | None) -> float:
        return self.consumer.options.drain_timeout + 5.0 if timeout is None else timeout

    async def stop(self, timeout: float | None = None) -> None:
        """Drain and leave, within `timeout` seconds (default: the subscription's
        `drain_timeout` + 5 s) plus at most `CANCEL_GRACE`: in-flight handlers may finish
        until `timeout - STOP_RESERVE`; then what is done is committed, the partitions
        are handed back and the member leaves. A consumer still busy at the end is
        cancelled (what it held is redelivered to the others: nothing is lost, only
        repeated; a plain-function handler's thread is left to finish on its own)."""
        total = self._bound(timeout)
        deadline = self.loop.time() + total
        if not self.task.done():
            reserve = min(STOP_RESERVE, total / 10)
            await self.consumer.stop(drain_timeout=max(0.0, total - reserve))
            await asyncio.wait({self.task}, timeout=max(0.0, deadline - self.loop.time()))
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=CANCEL_GRACE)

    def stop_from_thread(self, timeout: float | None = None) -> None:
        """`stop()` from a thread that is not running this subscription's loop (a
        signal handler's thread, a WSGI worker); blocks until it has stopped."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("stop_from_thread() on the subscription's own loop: await stop()")
        if self.loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.stop(timeout), self.loop)
        future.result(self._bound(timeout) + CANCEL_GRACE + 5.0)


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

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop every subscription (`stop_subscriptions`), then close the backend."""
        await self.stop_subscriptions(timeout)
        # A consumer still cleaning up after its cancel would use the backend's
        # connections after they were closed (and open them again, for good).
        late = [sub.task for sub in self._subscriptions if not sub.task.done()]
        if late:
            await asyncio.wait(late, timeout=CLOSE_GRACE)
        await self.backend.close()

    async def stop_subscriptions(self, timeout: float | None = None) -> None:
        """Stop every running subscription made here, all at once, each within
        `timeout` (see `AsyncSubscription.stop`); publishing still works after."""
        subs = list(self._subscriptions)
        await asyncio.gather(*(sub.stop(timeout) for sub in subs))

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
        join_timeout: float | None = 30.0,
        **option_fields: Any,
    ) -> AsyncSubscription:
        """Run `handler` on the messages of `topic`: each message to one member of
        `group` (every group gets every message), or, without a group, every message to
        this subscriber. Returns once it has joined (TimeoutError after `join_timeout`);
        with `join_timeout=None` at once -- it joins in the background, retrying while
        the backend is away. It runs until `stop()`."""
        if options is None:
            options = SubscribeOptions(**option_fields)
        elif option_fields:
            raise InvalidEvent("give options= or option fields, not both")
        consumer = await self.backend.consumer(topic, handler, group, options)
        task = asyncio.get_running_loop().create_task(consumer.run())
        if join_timeout is None:
            return self._keep(AsyncSubscription(consumer, task))
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
        return self._keep(AsyncSubscription(consumer, task))

    def _keep(self, sub: AsyncSubscription) -> AsyncSubscription:
        self._subscriptions.add(sub)
        sub.task.add_done_callback(lambda _: self._subscriptions.discard(sub))
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

    @property
    def joined(self) -> bool:
        return self._sub.joined

    def stop(self, timeout: float | None = None) -> None:
        """Drain and leave within `timeout` (see `AsyncSubscription.stop`)."""
        self._events._run(self._sub.stop(timeout))


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
