"""What a `shoal.Service` needs from shoal.events to run `@svc.on_event` handlers: a
subscription made on a loop that runs in another thread (the service's agent, or the
app's), stopped from a third thread (SIGTERM's) within a bound, after its in-flight
handlers finished and its claims were handed back; joining in the background; the
service's own control-plane client reused (and left open). Every backend, real servers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from shoal.client import AsyncControlPlane
from shoal.events import AsyncEvents, Message, TopicConfig
from shoal.testing import ServerProcess, wait_for

T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread of its own, like a service's agent."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def agent() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def test_a_stop_from_another_thread_drains_and_hands_back(url: str, agent: LoopThread) -> None:
    async def make() -> AsyncEvents:
        return AsyncEvents(url)

    bus = agent.run(make())
    agent.run(bus.create_topic("svc", TopicConfig(partitions=2)))
    started, finished = threading.Event(), []

    async def handler(message: Message) -> None:  # a FastAPI service's kind of handler
        started.set()
        await asyncio.sleep(0.5)
        finished.append(message.id)

    sub = agent.run(bus.subscribe("svc", handler, group="svc"))
    assert sub.joined and sub.loop is agent.loop
    sent = agent.run(bus.publish("svc", "work"))
    assert started.wait(15), "the handler never started"
    t0 = time.monotonic()
    sub.stop_from_thread(timeout=10)  # what a SIGTERM handler's thread does
    elapsed = time.monotonic() - t0
    assert finished == [sent.id], "the in-flight handler finished before the stop returned"
    assert elapsed < 10 and not sub.running
    (info,) = agent.run(bus.groups("svc"))
    assert info.claims == {} and info.members == (), "claims handed back, member gone"
    agent.run(bus.aclose())


def test_a_stop_is_bounded_when_a_handler_never_returns(url: str, agent: LoopThread) -> None:
    async def make() -> AsyncEvents:
        return AsyncEvents(url)

    bus = agent.run(make())
    release, started = threading.Event(), threading.Event()

    def stuck(message: Message) -> None:  # a Flask service's kind of handler, on a thread
        started.set()
        release.wait(30)

    sub = agent.run(bus.subscribe("stuck", stuck, group="g"))
    agent.run(bus.publish("stuck", "forever"))
    assert started.wait(15)
    t0 = time.monotonic()
    sub.stop_from_thread(timeout=1.0)
    elapsed = time.monotonic() - t0
    release.set()
    assert elapsed < 1.0 + 1.0 + 1.0, f"stop(timeout=1) took {elapsed:.2f} s"
    assert not sub.running
    agent.run(bus.aclose(timeout=1.0))


def test_subscribe_can_return_before_it_joins(url: str, agent: LoopThread) -> None:
    async def make() -> AsyncEvents:
        return AsyncEvents(url)

    bus = agent.run(make())
    got: list[str] = []
    sub = agent.run(
        bus.subscribe("later", lambda m: got.append(m.id), group="g", join_timeout=None)
    )
    wait_for(lambda: sub.joined, 15, what="the background join")
    wait_for(lambda: agent.run(bus.groups("later"))[0].claims, 15, what="claims")
    sent = agent.run(bus.publish("later", "x"))
    wait_for(lambda: got == [sent.id], 15, what="the message")
    agent.run(bus.aclose())


def test_the_services_own_control_plane_client_is_reused_and_left_open(
    shoal_server: ServerProcess, agent: LoopThread
) -> None:
    async def make() -> tuple[AsyncControlPlane, AsyncEvents]:
        acp = AsyncControlPlane(shoal_server.url)
        return acp, AsyncEvents(shoal_server.url, control_plane=acp)

    acp, bus = agent.run(make())
    assert bus.backend.acp is acp  # type: ignore[attr-defined]
    got: list[str] = []
    sub = agent.run(bus.subscribe("own", lambda m: got.append(m.id), group="g"))
    sent = agent.run(bus.publish("own", "x"))
    wait_for(lambda: got == [sent.id], 15, what="the message")
    sub.stop_from_thread()
    agent.run(bus.aclose())
    assert agent.run(acp.cluster_status()).revision > 0, "the client still works"
    agent.run(acp.aclose())
