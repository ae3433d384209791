"""The Prometheus metrics of a service process: requests it serves, calls it makes.

Names follow one scheme across shoal (`shoal_` prefix, base units in the name, few
labels). Route labels are route templates (`/users/{user_id}`), never raw paths, so a
crawler cannot blow up the number of series; a request no route matched is `unmatched`.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "CALLS",
    "CALL_ATTEMPTS",
    "CALL_SECONDS",
    "CONTENT_TYPE_LATEST",
    "IN_FLIGHT",
    "REQUESTS",
    "REQUEST_SECONDS",
    "RETRIES",
    "UPSTREAM_HOSTS",
    "render",
]

# Seconds; Prometheus' defaults stop at 10 s and start too coarse for fast services.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "shoal_service_requests_total",
    "Requests this service answered, by route and status.",
    ["service", "method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "shoal_service_request_duration_seconds",
    "Time to answer a request, by route.",
    ["service", "method", "route"],
    buckets=_BUCKETS,
)
IN_FLIGHT = Gauge("shoal_service_requests_in_flight", "Requests being handled now.", ["service"])
CALLS = Counter(
    "shoal_client_requests_total",
    "Calls made to another service, by how they ended (after retries).",
    ["upstream", "outcome"],
)
CALL_SECONDS = Histogram(
    "shoal_client_request_duration_seconds",
    "Time a call to another service took, retries included.",
    ["upstream"],
    buckets=_BUCKETS,
)
CALL_ATTEMPTS = Counter(
    "shoal_client_attempts_total",
    "Attempts sent to instances of another service, by outcome.",
    ["upstream", "outcome"],
)
RETRIES = Counter(
    "shoal_client_retries_total",
    "Retries, and retries the budget refused.",
    ["upstream", "result"],
)
UPSTREAM_HOSTS = Gauge(
    "shoal_client_upstream_instances",
    "Instances of a called service, by state (healthy, ejected, open circuit).",
    ["upstream", "state"],
)


def render() -> bytes:
    """The process's metrics in the Prometheus text format."""
    return generate_latest()
