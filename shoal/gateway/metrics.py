"""The gateway's Prometheus metrics, per route and per upstream service.

Label values are route names and service names from the route table, never raw paths or
client data, so the number of series is bounded by the configuration.

Why not prometheus_client's Counter and Histogram on the request path: each `inc` and
`observe` takes a lock and each `labels()` builds a key, together ~2.5 us per request
-- a tenth of the whole budget of a proxied request here. The hot path instead bumps
plain integers in its route's `RouteStats` (one event loop per process: no lock is
needed), and a custom collector turns every route's numbers into the usual counter and
histogram series when /metrics is scraped. Numbers of a route that left the table stay
exported (counters must not go backwards) for as long as the process lives.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from prometheus_client.core import REGISTRY, CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONNECTIONS", "CONTENT_TYPE_LATEST", "RELOADS", "RouteStats", "render", "stats_for"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONNECTIONS = Gauge("shoal_gateway_client_connections", "Client connections open now.")
RELOADS = Counter(
    "shoal_gateway_route_reloads_total",
    "Route table loads, by source and result (applied or refused).",
    ["source", "result"],
)


class RouteStats:
    """One route's numbers; plain ints, bumped from the gateway's one event loop."""

    __slots__ = (
        "attempts",
        "buckets",
        "connects",
        "duration_sum",
        "rejected",
        "requests",
        "retries",
        "route",
        "upstream",
    )

    def __init__(self, route: str, upstream: str) -> None:
        self.route, self.upstream = route, upstream
        self.requests: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.attempts: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.retries = 0
        self.connects = 0

    def answered(self, status: int, seconds: float) -> None:
        requests = self.requests
        requests[status] = requests.get(status, 0) + 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def attempt(self, outcome: str) -> None:
        attempts = self.attempts
        attempts[outcome] = attempts.get(outcome, 0) + 1

    def rejected_for(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


_stats: dict[tuple[str, str], RouteStats] = {}


def stats_for(route: str, upstream: str) -> RouteStats:
    """The numbers of `route` to `upstream`, shared by every table that has that route."""
    key = (route, upstream)
    stats = _stats.get(key)
    if stats is None:
        stats = _stats[key] = RouteStats(route, upstream)
    return stats


class _RouteCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "shoal_gateway_requests",
            "Requests the gateway answered, by route, upstream service and status.",
            labels=["route", "upstream", "status"],
        )
        duration = HistogramMetricFamily(
            "shoal_gateway_request_duration_seconds",
            "From the request's head to the last byte of the answer, by route.",
            labels=["route"],
        )
        attempts = CounterMetricFamily(
            "shoal_gateway_upstream_attempts",
            "Attempts sent to an upstream service's instances, by route and outcome.",
            labels=["route", "upstream", "outcome"],
        )
        retries = CounterMetricFamily(
            "shoal_gateway_retries", "Retried attempts, by route.", labels=["route", "upstream"]
        )
        rejected = CounterMetricFamily(
            "shoal_gateway_rejected",
            "Requests the gateway answered itself, by route and reason (the error code).",
            labels=["route", "reason"],
        )
        connects = CounterMetricFamily(
            "shoal_gateway_upstream_connects",
            "New connections opened to upstream instances (the rest were reused).",
            labels=["route", "upstream"],
        )
        for stats in list(_stats.values()):
            route, upstream = stats.route, stats.upstream
            for status, count in sorted(stats.requests.items()):
                requests.add_metric([route, upstream, str(status)], count)
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            duration.add_metric([route], buckets, stats.duration_sum)
            for outcome, count in sorted(stats.attempts.items()):
                attempts.add_metric([route, upstream, outcome], count)
            retries.add_metric([route, upstream], stats.retries)
            for reason, count in sorted(stats.rejected.items()):
                rejected.add_metric([route, reason], count)
            connects.add_metric([route, upstream], stats.connects)
        yield from (requests, duration, attempts, retries, rejected, connects)


REGISTRY.register(_RouteCollector())


def render() -> bytes:
    """The process's metrics in the Prometheus text format."""
    return generate_latest()
