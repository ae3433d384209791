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
its own calls, publishes and log lines carry the publisher's trace id.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..client.config import RETRY_MAX, RETRY_MIN
from ..events import AsyncEvents, Handler, Published, SubscribeOptions
from ..events.handlers import is_async
from ..events.model import Message
from ..observe.trace import outgoing_headers, trace_from_headers, use_trace
from .agent import Agent

__all__ = ["ServiceEvents", "traced"]

log = logging.getLogger("shoal.service")


def traced(handler: Handler) -> Handler:
    """`handler`, run with the trace context its message carries made current."""

    def context(message: Message) -> Any:
        return trace_from_headers({k.lower(): v for k, v in message.headers.items()})

    if is_async(handler):

        async def run_async(message: Message) -> object:
            with use_trace(context(message)):
                return await handler(message)  # type: ignore[misc]

        return run_async

    def run(message: Message) -> object:
        with use_trace(context(message)):
            return handler(message)

    return run


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
        trace: dict[str, str],
    ) -> Published:
        return await self._events().publish(
            topic, payload, key, {**trace, **(headers or {})}, id=id
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
        # The trace headers are taken here, in the caller's context, not on the agent.
        work = self._publish(topic, payload, key, headers, id, outgoing_headers())
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
        work = self._publish(topic, payload, key, headers, id, outgoing_headers())
        if self._agent.on_agent_loop():
            return await work
        return await asyncio.wrap_future(self._agent.submit(work))

    # -- subscribing -----------------------------------------------------------------------

    def add(
        self, topic: str, handler: Handler, group: str | None, options: SubscribeOptions
    ) -> None:
        wanted = _Wanted(topic, traced(handler), group, options)
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
