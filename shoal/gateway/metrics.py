"""The gateway's Prometheus metrics, per route and per upstream service.

Label values are route names and service names from the route table, never raw paths or
client data, so the number of series is bounded by the configuration. The hot path must
not pay `labels()` (a tuple, a lock and a dict lookup) per request: `RouteMetrics` holds
each route's children, resolved once per route and status and kept for the route's life.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "CONNECTIONS", "RELOADS", "RouteMetrics", "render"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "shoal_gateway_requests_total",
    "Requests the gateway answered, by route, upstream service and status.",
    ["route", "upstream", "status"],
)
DURATION = Histogram(
    "shoal_gateway_request_duration_seconds",
    "From the request's head to the last byte of the answer, by route.",
    ["route"],
    buckets=_BUCKETS,
)
ATTEMPTS = Counter(
    "shoal_gateway_upstream_attempts_total",
    "Attempts sent to an upstream service's instances, by outcome.",
    ["upstream", "outcome"],
)
RETRIES = Counter(
    "shoal_gateway_retries_total", "Retried attempts, by route.", ["route", "upstream"]
)
REJECTED = Counter(
    "shoal_gateway_rejected_total",
    "Requests the gateway answered itself, by route and reason (the error code).",
    ["route", "reason"],
)
CONNECTIONS = Gauge("shoal_gateway_client_connections", "Client connections open now.")
UPSTREAM_CONNECTS = Counter(
    "shoal_gateway_upstream_connects_total",
    "New connections opened to upstream instances (the rest were reused).",
    ["upstream"],
)
RELOADS = Counter(
    "shoal_gateway_route_reloads_total",
    "Route table loads, by source and result (applied or refused).",
    ["source", "result"],
)


class RouteMetrics:
    """One route's metric children, resolved lazily and cached."""

    __slots__ = ("_attempts", "_requests", "connects", "duration", "route", "upstream")

    def __init__(self, route: str, upstream: str) -> None:
        self.route, self.upstream = route, upstream
        self.duration = DURATION.labels(route)
        self.connects = UPSTREAM_CONNECTS.labels(upstream)
        self._requests: dict[int, Counter] = {}
        self._attempts: dict[str, Counter] = {}

    def answered(self, status: int, seconds: float) -> None:
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = REQUESTS.labels(self.route, self.upstream, status)
        child.inc()
        self.duration.observe(seconds)

    def attempt(self, outcome: str) -> None:
        child = self._attempts.get(outcome)
        if child is None:
            child = self._attempts[outcome] = ATTEMPTS.labels(self.upstream, outcome)
        child.inc()

    def retried(self) -> None:
        RETRIES.labels(self.route, self.upstream).inc()

    def rejected(self, reason: str) -> None:
        REJECTED.labels(self.route, reason).inc()


def render() -> bytes:
    """The process's metrics in the Prometheus text format."""
    return generate_latest()
