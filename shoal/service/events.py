"""Events for a `Service`: `@svc.on_event` subscriptions and `svc.publish`, on the agent.

    @svc.on_event("orders.created", group="billing")
    def bill(message): ...                         # Flask: a plain function (a worker thread)

    @svc.on_event("orders.created", group="audit")
    async def audit(message): ...                  # FastAPI: a coroutine (the agent's loop)

    svc.publish("orders.created", body, key=customer)      # blocking
    await svc.apublish("orders.created", body, key=customer)

Theory of operation. Everything runs on the agent's loop (`agent.py`) through one
`shoal.events.AsyncEvents`, so a Flask and a FastAPI service share one implementation and
neither server's threads or loop ever wait on the control plane. Plain handlers run on
worker threads (they may block), coroutine handlers on the agent's loop (they must not).

Lifetimes follow the instance's. Subscriptions start once the instance is registered --
when the app's start-up has run and it serves -- so a handler never runs in a process that
is not ready; with `register=False`, at once. On SIGTERM they stop *before* the instance
deregisters: the handlers in flight finish, the consumer hands its partitions back, and the
group's other members carry on from the committed offsets without a redelivery. A
subscription that cannot be made (the control plane is away) is retried with backoff for as
long as the process lives, like everything the agent does.

Trace context travels in the message headers: a publish carries the current trace's child
`traceparent` and `x-request-id`, and a handler runs with the message's context current, so
its own calls, publishes and log lines carry the publisher's trace id. With OpenTelemetry
export on (`shoal.observe.otel`), a publish is a PRODUCER span whose id is the
`traceparent` it sent, and each handling a CONSUMER span, its child: the trace runs
request -> publish -> every group's handling -> the handlers' own calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..client.config import RETRY_MAX, RETRY_MIN
from ..events import AsyncEvents, Handler, Published, SubscribeOptions
from ..events.handlers import is_async
from ..events.model import Message
from ..observe import otel
from ..observe.trace import (
    TRACEPARENT_HEADER,
    TraceContext,
    current_trace,
    outgoing_headers,
    parse_traceparent,
    trace_from_headers,
    use_trace,
)
from .agent import Agent

__all__ = ["ServiceEvents", "traced"]

log = logging.getLogger("shoal.service")


def _attributes(message_topic: str, message_id: str, partition: int) -> dict[str, Any]:
    # OpenTelemetry's messaging semantic conventions.
    return {
        "messaging.system": "shoal",
        "messaging.destination.name": message_topic,
        "messaging.message.id": message_id,
        "messaging.destination.partition.id": str(partition),
    }


def _consumer_span(
    message: Message, group: str | None, context: TraceContext, start_ns: int, error: str | None
) -> None:
    attributes = _attributes(message.topic, message.id, message.partition)
    attributes["messaging.operation.type"] = "process"
    attributes["messaging.message.delivery_attempt"] = message.attempt
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    otel.record_span(
        f"process {message.topic}",
        "consumer",
        trace_id=context.trace_id,
        span_id=context.span_id,
        parent_id=context.parent_id,
        sampled=context.sampled,
        start_ns=start_ns,
        end_ns=time.time_ns(),
        attributes=attributes,
        error=error,
    )


@contextlib.contextmanager
def _handling(message: Message, group: str | None) -> Iterator[None]:
    """The message's trace context made current for its handler; with export on, the
    handling recorded as a CONSUMER span, failed if the handler raised."""
    trace = trace_from_headers({k.lower(): v for k, v in message.headers.items()})
    start = time.time_ns()
    with use_trace(trace):
        try:
            yield
        except BaseException as error:
            if otel.enabled():
                _consumer_span(message, group, trace, start, f"{type(error).__name__}: {error}")
            raise
    if otel.enabled():
        _consumer_span(message, group, trace, start, None)


def traced(handler: Handler, group: str | None = None) -> Handler:
    """`handler`, run inside `_handling` of its message."""
    if is_async(handler):

        async def run_async(message: Message) -> object:
            with _handling(message, group):
                return await handler(message)  # type: ignore[misc]

        return run_async

    def run(message: Message) -> object:
        with _handling(message, group):
            return handler(message)

    return run


def _sending() -> tuple[dict[str, str], str | None]:
    """The trace headers of a publish made now, and the span it is a child of; taken in
    the caller's context, not on the agent's loop."""
    caller = current_trace.get()
    return outgoing_headers(), caller.span_id if caller is not None else None


@dataclass(frozen=True, slots=True)
class _Wanted:
    topic: str
    handler: Handler
    group: str | None
    options: SubscribeOptions


class ServiceEvents:
    """The event side of one service; see the module docstring. Thread-safe."""

    def __init__(self, agent: Agent, url: str | Sequence[str], service: str) -> None:
        self._agent, self._url, self._service = agent, url, service
        self._bus: AsyncEvents | None = None
        self._wanted: list[_Wanted] = []
        self._tasks: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._started = self._stopped = False

    # -- publishing ------------------------------------------------------------------------

    def _events(self) -> AsyncEvents:
        # Made on the agent's loop, over the agent's own control-plane client (an httpx
        # pool belongs to the loop that first used it); a broker URL picks that broker.
        if self._bus is None:
            self._bus = AsyncEvents(self._url, control_plane=self._agent.cp)
        return self._bus

    async def _publish(
        self,
        topic: str,
        payload: bytes | str,
        key: str | None,
        headers: Mapping[str, str] | None,
        id: str | None,
        sending: tuple[dict[str, str], str | None],
    ) -> Published:
        trace, parent = sending
        start = time.time_ns()
        try:
            published = await self._events().publish(
                topic, payload, key, {**trace, **(headers or {})}, id=id
            )
        except BaseException as error:
            if otel.enabled():
                self._producer_span(topic, trace, parent, start, None, f"{error}")
            raise
        if otel.enabled():
            self._producer_span(topic, trace, parent, start, published, None)
        return published

    @staticmethod
    def _producer_span(
        topic: str,
        trace: Mapping[str, str],
        parent: str | None,
        start_ns: int,
        published: Published | None,
        error: str | None,
    ) -> None:
        """The publish as a PRODUCER span: its id is the one `traceparent` gave the message."""
        ids = parse_traceparent(trace.get(TRACEPARENT_HEADER, ""))
        if ids is None:
            return
        trace_id, span_id, sampled = ids
        if published is not None:
            attributes = _attributes(topic, published.id, published.partition)
            attributes["messaging.shoal.offset"] = published.offset
            attributes["messaging.shoal.duplicate"] = published.duplicate
        else:
            attributes = {"messaging.system": "shoal", "messaging.destination.name": topic}
        attributes["messaging.operation.type"] = "send"
        otel.record_span(
            f"send {topic}",
            "producer",
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent,
            sampled=sampled,
            start_ns=start_ns,
            end_ns=time.time_ns(),
            attributes=attributes,
            error=error,
        )

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        id: str | None = None,
        timeout: float | None = 30.0,
    ) -> Published:
        if self._agent.on_agent_loop():
            raise RuntimeError("svc.publish blocks: from a coroutine, await svc.apublish(...)")
        work = self._publish(topic, payload, key, headers, id, _sending())
        return self._agent.run_coroutine(work, timeout)

    async def apublish(
        self,
        topic: str,
        payload: bytes | str,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        id: str | None = None,
    ) -> Published:
        work = self._publish(topic, payload, key, headers, id, _sending())
        if self._agent.on_agent_loop():
            return await work
        return await asyncio.wrap_future(self._agent.submit(work))

    # -- subscribing -----------------------------------------------------------------------

    def add(
        self, topic: str, handler: Handler, group: str | None, options: SubscribeOptions
    ) -> None:
        wanted = _Wanted(topic, traced(handler, group), group, options)
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self._service} is stopping: no new subscriptions")
            self._wanted.append(wanted)
            if self._started:
                self._spawn(wanted)

    def start(self) -> None:
        """Start every subscription (once; later ones start as they are added)."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
            for wanted in self._wanted:
                self._spawn(wanted)

    def _spawn(self, wanted: _Wanted) -> None:
        name = f"subscription of {self._service} to {wanted.topic}"
        self._tasks.append(self._agent.spawn(self._subscribe(wanted), name))

    async def _subscribe(self, wanted: _Wanted) -> None:
        delay = RETRY_MIN
        while True:
            try:
                await self._events().subscribe(
                    wanted.topic, wanted.handler, wanted.group, options=wanted.options
                )
            except Exception as error:  # the control plane away, a timeout: retried
                log.warning(
                    "subscribing to %s: %s (retrying in %.1f s)", wanted.topic, error, delay
                )
            else:
                log.info(
                    "%s subscribed to %s%s",
                    self._service,
                    wanted.topic,
                    f" in group {wanted.group}" if wanted.group else "",
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def stop(self, timeout: float) -> None:
        """Drain every subscription (bounded by `timeout`) and close the client. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            tasks = list(self._tasks)
        if not self._wanted and self._bus is None:
            return
        for task in tasks:
            task.cancel()  # one still trying to subscribe

        async def drain() -> None:
            # AsyncEvents stops its subscriptions all at once; the agent's client stays open.
            if self._bus is not None:
                await self._bus.aclose(timeout)

        try:
            self._agent.run_coroutine(drain(), timeout + 5.0)
        except Exception as error:
            log.warning("%s: stopping its subscriptions: %s", self._service, error)
