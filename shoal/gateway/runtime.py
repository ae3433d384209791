"""What a route table becomes in a running gateway: pools, limiters, metrics, header sets.

`Routing` is the object the proxy reads on every request: the compiled `RouteTable`
and, per route, a `RouteRuntime` with everything the hot path needs precomputed (the
upstream pool, the rate limiter, the header names to drop and the lines to add, the
metric children). A reload builds a whole new `Routing` next to the old one and swaps
one reference, so a request sees either the old table or the new one, never a mix, and
connections are not touched. Requests already routed finish on the runtime they started
with.

`UpstreamSet` owns what outlives one table: one watched `ServiceView` per service, run
on the gateway's own event loop (no agent thread: the listener that rebuilds a pool runs
between two requests, not beside them), and one `shoal.service.Upstream` per service and
client policy, so two routes with the same policy share breakers, outlier state and the
retry budget, and a reload that keeps a policy keeps that state. Rate limiters survive a
reload when their route keeps its name and its limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..client import AsyncControlPlane, ServiceView
from ..resilience import KeyedRateLimiter
from ..service.policy import ClientPolicy
from ..service.upstream import Upstream
from .metrics import RouteStats, stats_for
from .routes import Route, RouteTable

__all__ = ["RouteRuntime", "Routing", "UpstreamSet", "compile_routing"]

log = logging.getLogger("shoal.gateway")

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the gateway sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
REQUEST_OWN = frozenset(
    {b"content-length", b"expect", b"x-forwarded-for", b"x-request-id", b"traceparent"}
)
RESPONSE_OWN = frozenset({b"content-length", b"x-request-id"})
LIMITER_KEYS = 10_000


@dataclass(slots=True)
class RouteRuntime:
    route: Route
    upstream: Upstream
    limiter: KeyedRateLimiter | None
    limit_header: bytes | None  # the header whose value keys the limiter, or the client
    stats: RouteStats
    request_drop: frozenset[bytes]
    request_add: bytes
    response_drop: frozenset[bytes]
    response_add: bytes
    # Response header names as sent -> what the proxy does with them (proxy.py fills it).
    response_kinds: dict[bytes, str] = field(default_factory=dict)


class Routing:
    """One route table, compiled for the proxy; swapped whole on reload."""

    __slots__ = ("runtimes", "source", "table")

    def __init__(self, table: RouteTable, runtimes: dict[str, RouteRuntime], source: str) -> None:
        self.table, self.runtimes, self.source = table, runtimes, source

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "routes": [r.describe() for r in self.table.routes]}


class UpstreamSet:
    """Views and pools by service; see the module docstring."""

    def __init__(self, cp: AsyncControlPlane, rng: random.Random) -> None:
        self.cp, self.rng = cp, rng
        self._views: dict[str, ServiceView] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._upstreams: dict[tuple[str, str], Upstream] = {}
        self._waiters: dict[str, list[Callable[[], None]]] = {}

    def view(self, service: str) -> ServiceView:
        view = self._views.get(service)
        if view is None:
            view = self._views[service] = ServiceView(self.cp, service)
            view.subscribe(functools.partial(self._ready, service))
            self._tasks[service] = asyncio.get_running_loop().create_task(
                view.run(), name=f"view of {service}"
            )
        return view

    def upstream(self, service: str, policy: ClientPolicy) -> Upstream:
        key = (service, repr(policy))  # policies hold dicts, so they are not hashable
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = Upstream(service, self.view(service), policy, rng=self.rng)
            self._upstreams[key] = upstream
        return upstream

    def when_ready(self, service: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` once the service has a first view; returns a canceller."""
        if self.view(service).snapshot is not None:
            callback()
            return lambda: None
        waiters = self._waiters.setdefault(service, [])
        waiters.append(callback)

        def cancel() -> None:
            with contextlib.suppress(ValueError):
                waiters.remove(callback)

        return cancel

    def _ready(self, service: str, _snapshot: object = None) -> None:
        # After this listener every other one runs, among them the upstreams' own: call
        # the waiters once the pools have been built from this first view.
        if self._waiters.get(service):
            asyncio.get_running_loop().call_soon(self._wake, service)

    def _wake(self, service: str) -> None:
        for callback in self._waiters.pop(service, ()):
            try:
                callback()
            except Exception:  # one request's bug must not stop the view
                log.exception("a request waiting for the view of %s failed", service)

    def retain(self, routing: Routing) -> None:
        """Close the pools and views no route of `routing` uses any more."""
        used = {id(rt.upstream) for rt in routing.runtimes.values()}
        services = routing.table.services
        for key, upstream in list(self._upstreams.items()):
            if id(upstream) not in used:
                upstream.close()
                del self._upstreams[key]
        for service in list(self._views):
            if service not in services:
                self._tasks.pop(service).cancel()
                del self._views[service]
                self._waiters.pop(service, None)

    def describe(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for (service, _), upstream in self._upstreams.items():
            view = upstream.view
            out.append(
                {
                    "service": service,
                    "balancer": upstream.policy.balancer,
                    "connected": view.connected,
                    "revision": view.snapshot.revision if view.snapshot else None,
                    "instances": upstream.describe(),
                }
            )
        return out

    async def close(self) -> None:
        for upstream in self._upstreams.values():
            upstream.close()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._upstreams.clear()
        self._views.clear()
        self._tasks.clear()


def compile_routing(
    table: RouteTable, upstreams: UpstreamSet, source: str, previous: Routing | None
) -> Routing:
    """The runtime of `table`, reusing `previous`'s limiters where nothing changed."""
    runtimes: dict[str, RouteRuntime] = {}
    for route in table.routes:
        old = previous.runtimes.get(route.name) if previous is not None else None
        limiter: KeyedRateLimiter | None = None
        if route.rate_limit is not None:
            if (
                old is not None
                and old.limiter is not None
                and old.route.rate_limit == route.rate_limit
            ):
                limiter = old.limiter
            else:
                limiter = KeyedRateLimiter(
                    route.rate_limit.rate, route.rate_limit.burst, LIMITER_KEYS
                )
        header = route.rate_limit.header if route.rate_limit is not None else None
        request, response = route.request_headers, route.response_headers
        runtimes[route.name] = RouteRuntime(
            route=route,
            upstream=upstreams.upstream(route.service, route.policy),
            limiter=limiter,
            limit_header=header.encode() if header else None,
            stats=stats_for(route.name, route.service),
            request_drop=HOP_BY_HOP | REQUEST_OWN | {n.encode() for n in request.names},
            request_add=request.lines(),
            response_drop=HOP_BY_HOP | RESPONSE_OWN | {n.encode() for n in response.names},
            response_add=response.lines(),
        )
    return Routing(table, runtimes, source)
