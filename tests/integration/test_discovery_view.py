"""The client's watched service view and registration holder against a real server.

The view (list + watch) follows registrations and deletions, keeps its last snapshot
while the control plane is down, and resumes after it returns; the holder's instance goes
the moment its keep-alive stream closes, and comes back by itself when its lease is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shoal.client import AsyncControlPlane
from shoal.client.discovery import ServiceSnapshot, ServiceView
from shoal.client.registration import RegistrationHolder
from shoal.registry import InstanceFilter
from shoal.testing import ServerProcess

T = TypeVar("T")


async def eventually(condition: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise TimeoutError(f"condition not met within {timeout} s")


def ids(view: ServiceView) -> list[str]:
    snapshot = view.snapshot
    return [] if snapshot is None else [i.id for i in snapshot.instances]


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


def test_view_follows_registrations_and_keeps_its_last_snapshot_through_an_outage(
    server: ServerProcess,
) -> None:
    async def main() -> None:
        cp = AsyncControlPlane(server.url, retry_budget=2.0)
        view = ServiceView(cp, "users")
        seen: list[ServiceSnapshot] = []
        view.subscribe(seen.append)
        task = asyncio.create_task(view.run())
        try:
            await cp.registry.register("users", "u1", address="127.0.0.1", port=8001)
            await cp.registry.register("users", "u2", address="127.0.0.1", port=8002)
            await cp.registry.register("other", "o1", address="127.0.0.1", port=9000)
            await eventually(lambda: ids(view) == ["u1", "u2"])
            await cp.registry.put_settings("users", 0.5)
            await eventually(lambda: view.snapshot and view.snapshot.settings.protect_threshold)
            await cp.registry.register(
                "users", "u2", address="127.0.0.1", port=8002, status="critical"
            )

            def healthy() -> list[str]:
                assert view.snapshot is not None
                found = view.snapshot.select(InstanceFilter(healthy=True))
                return [i.id for i in found.instances]

            await eventually(lambda: healthy() == ["u1"])
            await cp.registry.deregister("users", "u1")
            await eventually(lambda: ids(view) == ["u2"])
            # Protect threshold: 0 of 1 healthy is below 0.5, so discovery keeps u2.
            assert healthy() == ["u2"]

            server.kill()
            await eventually(lambda: not view.connected)
            assert ids(view) == ["u2"]  # the last view stays while the control plane is away
            server.start()
            server.wait_ready()
            await cp.registry.register("users", "u3", address="127.0.0.1", port=8003)
            await eventually(lambda: ids(view) == ["u2", "u3"], timeout=30)
            assert view.connected
            assert all(s.service == "users" for s in seen)
            revisions = [s.revision for s in seen]
            assert revisions == sorted(revisions)
        finally:
            task.cancel()
            await cp.aclose()

    run(main)


def test_holder_instance_goes_when_its_stream_closes_and_returns_after_a_lost_lease(
    server: ServerProcess,
) -> None:
    async def main() -> None:
        cp = AsyncControlPlane(server.url)
        watcher_cp = AsyncControlPlane(server.url)
        view = ServiceView(watcher_cp, "articles")
        viewing = asyncio.create_task(view.run())
        registrations: list[int] = []
        holder = RegistrationHolder(
            cp,
            "articles",
            "a1",
            ttl=30,
            address="127.0.0.1",
            port=8010,
            tags=["blue"],
            on_registered=lambda r: registrations.append(r.revision),
        )
        holding = asyncio.create_task(holder.run())
        try:
            await asyncio.wait_for(holder.registered.wait(), 10)
            await eventually(lambda: ids(view) == ["a1"])
            first_lease = holder.lease
            assert first_lease is not None

            # Someone revokes the lease (as an expiry would): the holder registers again
            # with a new lease, without being told.
            await watcher_cp.revoke(first_lease)
            await eventually(lambda: len(registrations) >= 2 and holder.lease != first_lease)
            await eventually(lambda: ids(view) == ["a1"])
            # Until the new lease's stream is open, a death is noticed only after the TTL
            # (a flake here: the holder was cancelled between registering and holding).
            await asyncio.wait_for(holder.held.wait(), 10)

            # The holder's process "dies": its stream closes and the instance is gone at
            # once, long before the 30 s TTL.
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
            await cp.aclose()
            started = time.monotonic()
            await eventually(lambda: ids(view) == [], timeout=10)
            assert time.monotonic() - started < 10
        finally:
            holding.cancel()
            viewing.cancel()
            await asyncio.gather(holding, viewing, return_exceptions=True)
            await watcher_cp.aclose()

    run(main)


def test_holder_deregister_removes_the_instance_and_its_lease(server: ServerProcess) -> None:
    async def main() -> None:
        async with AsyncControlPlane(server.url) as cp:
            holder = RegistrationHolder(cp, "jobs", "j1", address="127.0.0.1", port=8020)
            task = asyncio.create_task(holder.run())
            await asyncio.wait_for(holder.registered.wait(), 10)
            lease = holder.lease
            assert lease is not None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await holder.deregister()
            found = await cp.registry.instances("jobs")
            assert found.instances == ()
            assert (await cp.list("/registry/services/jobs/")).kvs == ()

    run(main)
