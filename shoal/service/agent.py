"""The agent: one background thread per process that talks to the control plane.

A service -- Flask in worker threads or FastAPI on its own event loop -- never waits for
the control plane on a request's path. Everything that does (holding the registration,
the watched views of the services it calls, config subscriptions) runs here, on an
asyncio loop in a daemon thread, through one `AsyncControlPlane`. What requests need is
published as immutable snapshots (`ServiceView.snapshot`) that any thread reads without
a lock. Anything the agent runs retries for as long as the process lives: a control
plane that is away leaves the service on its last view and its last config (DESIGN.md
decision 6).

Methods other than `run_coroutine` return at once and are safe from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from ..client import AsyncControlPlane, ConfigUpdate, ServiceView, ShoalError
from ..client.config import RETRY_MAX, RETRY_MIN
from ..client.protocol import parse_endpoints
from ..client.registration import RegistrationHolder

__all__ = ["Agent"]

log = logging.getLogger("shoal.service")

T = TypeVar("T")


class Agent:
    """The control-plane side of one process; see the module docstring."""

    def __init__(self, endpoints: str | tuple[str, ...]) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="shoal-agent", daemon=True)
        self._views: dict[str, ServiceView] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._holders: dict[int, Future[Any]] = {}  # id(holder) -> its task
        self._lock = threading.Lock()
        self._closed = False
        self._thread.start()
        self._ready.wait()
        self.cp: AsyncControlPlane = self.run_coroutine(self._make_client(), 10)

    # -- the loop thread ---------------------------------------------------------------

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _make_client(self) -> AsyncControlPlane:
        # Created on the agent's loop: httpx binds its connection pool to the first loop
        # that uses it. A retry budget of a few seconds, then each task's own backoff.
        return AsyncControlPlane(self.endpoints, timeout=10.0, retry_budget=5.0)

    def run_coroutine(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run `coroutine` on the agent's loop and wait for its result (not from the loop)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coroutine` on the agent's loop; its future (for `asyncio.wrap_future`)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def on_agent_loop(self) -> bool:
        """Whether the caller runs on the agent's loop (where blocking on it deadlocks)."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> Future[Any]:
        """Run `coroutine` as a task of the agent until it ends or the agent stops."""

        async def task() -> Any:
            current = asyncio.current_task()
            assert current is not None
            self._tasks.add(current)
            try:
                return await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent task %s failed", name)
                raise
            finally:
                self._tasks.discard(current)

        return asyncio.run_coroutine_threadsafe(task(), self._loop)

    # -- what services use -------------------------------------------------------------

    def view(self, service: str) -> ServiceView:
        """The watched view of `service`, started on first use and shared after."""
        with self._lock:
            view = self._views.get(service)
            if view is None:
                view = ServiceView(self.cp, service)
                self._views[service] = view
                self.spawn(view.run(), f"view of {service}")
            return view

    def hold(
        self,
        service: str,
        instance_id: str,
        *,
        ttl: int,
        on_registered: Callable[[Any], object] | None = None,
        **fields: Any,
    ) -> RegistrationHolder:
        """Register and keep `instance_id` registered until `release` or the agent stops."""
        holder = RegistrationHolder(
            self.cp, service, instance_id, ttl=ttl, on_registered=on_registered, **fields
        )
        self._holders[id(holder)] = self.spawn(holder.run(), f"registration of {instance_id}")
        return holder

    def release(self, holder: RegistrationHolder, timeout: float = 5.0) -> None:
        """Stop holding `holder`'s registration and deregister it (waits up to `timeout`)."""

        async def release() -> None:
            task = self._holders.pop(id(holder), None)
            if task is not None:  # stopped first, so it cannot register again after this
                task.cancel()
                await asyncio.gather(asyncio.wrap_future(task), return_exceptions=True)
            await holder.deregister()

        with contextlib.suppress(Exception):
            self.run_coroutine(release(), timeout)

    def follow_config(
        self,
        item: str,
        labels: Mapping[str, str],
        callback: Callable[[ConfigUpdate], object],
    ) -> Future[Any]:
        """Call `callback(update)` (on the agent's thread) for the content of `item` that
        `labels` get, now and on every change, for as long as the agent runs."""
        return self.spawn(self._follow_config(item, dict(labels), callback), f"config {item}")

    async def _follow_config(
        self, item: str, labels: dict[str, str], callback: Callable[[ConfigUpdate], object]
    ) -> None:
        from ..client.config import ConfigCursor
        from ..config import ItemId

        cursor = ConfigCursor(ItemId.parse(item), labels)  # keeps its place across retries
        delay = RETRY_MIN
        while True:
            try:
                async for update in self.cp.stream(cursor):
                    delay = RETRY_MIN
                    try:
                        callback(update)
                    except Exception:  # a bad callback must not stop the subscription
                        log.exception("config callback for %s raised", item)
            except ShoalError as error:
                log.warning("config watch of %s: %s (keeping the last content)", item, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    # -- stopping ----------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task, close the client and end the thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True

        async def shutdown() -> None:
            tasks = [t for t in self._tasks if not t.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.cp.aclose()

        with contextlib.suppress(Exception):
            self.run_coroutine(shutdown(), timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
