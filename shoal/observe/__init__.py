"""Observability shared by every shoal process: trace context (W3C), request ids, and the
one logging setup.

`shoal.observe.trace` holds the current request's `TraceContext` in a context variable,
set by the service SDK's middleware from the incoming `traceparent` / `x-request-id`
headers and propagated by its clients on every outgoing call. `shoal.observe.logs`
configures logging for `shoal server`, `shoal worker` and services alike: readable lines
by default, JSON with `--log-format json` / `SHOAL_LOG_FORMAT=json`, the trace id in each.
Metric names follow one scheme, described in docs/observability.md.
"""

from .logs import JsonFormatter, TextFormatter, TraceFilter, setup_logging
from .trace import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TraceContext,
    current_trace,
    outgoing_headers,
    parse_traceparent,
    trace_from_headers,
    use_trace,
)

__all__ = [
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "JsonFormatter",
    "TextFormatter",
    "TraceContext",
    "TraceFilter",
    "current_trace",
    "outgoing_headers",
    "parse_traceparent",
    "setup_logging",
    "trace_from_headers",
    "use_trace",
]
