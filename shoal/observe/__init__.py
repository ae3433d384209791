"""Observability shared by every shoal process: trace context (W3C) and request ids.

`shoal.observe.trace` holds the current request's `TraceContext` in a context variable,
set by the service SDK's middleware from the incoming `traceparent` / `x-request-id`
headers and propagated by its clients on every outgoing call.
"""

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
    "TraceContext",
    "current_trace",
    "outgoing_headers",
    "parse_traceparent",
    "trace_from_headers",
    "use_trace",
]
