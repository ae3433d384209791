"""OpenTelemetry SERVER spans for the requests the gateway proxies, when export is on.

Theory of operation. `shoal.observe.otel` exports when the user installed the SDK and
configured an OTLP endpoint (the standard `OTEL_*` variables); the gateway process calls
`otel.configure("shoal-gateway")` at start and its `ProxyContext` reads the answer once.
With export on, every request that is routed and sent upstream (or tried) gets a
`ProxySpan` when its upstream request head is built -- with the ids of the `traceparent`
the gateway sends on: the span's id is the one the upstream sees as its parent, and the
span's own parent is the client's span when the client sent a `traceparent`. The span
is exported when the request is answered (or the client goes away): route, method,
path, status, upstream service and instance, attempts; each failed attempt that the
plan followed with another is an event ("attempt failed": instance, outcome, why).

With export off nothing here runs: the proxy makes no span object and pays one
attribute read per request. Requests answered before a request head was built (400,
404 no route, 429, 413, 417, 501) get no span; their access-log line and metrics count
them.
"""

from __future__ import annotations

import time

from ..observe import otel
from ..observe.otel import SpanEvent

__all__ = ["ProxySpan"]


class ProxySpan:
    """One proxied request's span, until it is exported by `finish`."""

    __slots__ = ("events", "parent_id", "sampled", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str, parent_id: str | None, sampled: bool) -> None:
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id, parent_id
        self.sampled = sampled
        self.events: list[SpanEvent] = []

    def attempt_failed(self, number: int, instance: str, outcome: str, problem: str) -> None:
        """An attempt that failed (or answered 5xx) and was not the last."""
        attributes: dict[str, str | int | float | bool] = {
            "shoal.attempt": number,
            "shoal.upstream.instance": instance,
            "shoal.outcome": outcome,
            "shoal.problem": problem,
        }
        self.events.append(("attempt failed", time.time_ns(), attributes))

    def finish(
        self,
        *,
        method: bytes,
        route: str,
        path: bytes,
        status: int,
        service: str,
        instance: str,
        attempts: int,
        request_id: bytes,
        seconds: float,
        error: str | None,
    ) -> None:
        end = time.time_ns()
        name = method.decode("latin-1")
        attributes: dict[str, str | int | float | bool] = {
            "http.request.method": name,
            "http.route": route,
            "url.path": path.decode("latin-1"),
            "http.response.status_code": status,
            "shoal.upstream.service": service,
            "shoal.attempts": attempts,
            "shoal.retries": max(0, attempts - 1),
            "shoal.request_id": request_id.decode("latin-1"),
        }
        if instance:
            attributes["shoal.upstream.instance"] = instance
        if error:
            attributes["shoal.error"] = error
        otel.record_span(
            f"{name} {route}",
            "server",
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_id=self.parent_id,
            sampled=self.sampled,
            start_ns=end - int(seconds * 1e9),
            end_ns=end,
            attributes=attributes,
            error=(error or f"status {status}") if status >= 500 else None,
            events=self.events,
        )
