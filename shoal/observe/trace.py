"""W3C Trace Context (`traceparent`) and request ids, carried through a context variable.

A request that enters a service gets a `TraceContext`: the caller's trace id and request
id when the headers carry valid ones, fresh ones otherwise, and a new span id of its own
(the caller's span becomes the parent). Every call the service makes while handling it
sends `traceparent` with the same trace id and a new span id, and the same
`x-request-id`, so one user request can be followed through every hop's logs.

The context variable is per asyncio task and per thread, which is exactly per request in
both ASGI and WSGI servers. Malformed headers are ignored (a new trace starts), never an
error: tracing must not break a request. No OpenTelemetry dependency here; an exporter
can read the same ids.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace

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

TRACEPARENT_HEADER = "traceparent"
REQUEST_ID_HEADER = "x-request-id"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII, bounded
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_ids = random.Random()  # ids need to be unique, not secret; seeded from os.urandom


def _hex(bits: int) -> str:
    return f"{_ids.getrandbits(bits):0{bits // 4}x}"


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits: this hop's span
    parent_id: str | None  # the caller's span, if it sent one
    sampled: bool
    request_id: str

    @classmethod
    def new(cls, request_id: str | None = None) -> TraceContext:
        trace = _hex(128)
        return cls(trace, _hex(64), None, True, request_id or trace[:16])

    def child(self) -> TraceContext:
        """The context of a call made from this one: same trace, a new span."""
        return replace(self, span_id=_hex(64), parent_id=self.span_id)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """`(trace_id, parent span id, sampled)` of a valid `traceparent`, else None."""
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def trace_from_headers(headers: Mapping[str, str]) -> TraceContext:
    """The context of an incoming request (`headers` with lower-case names)."""
    raw_id = headers.get(REQUEST_ID_HEADER, "")
    request_id = raw_id if _REQUEST_ID.match(raw_id) else None
    parsed = parse_traceparent(headers.get(TRACEPARENT_HEADER, ""))
    if parsed is None:
        return TraceContext.new(request_id)
    trace_id, parent, sampled = parsed
    return TraceContext(trace_id, _hex(64), parent, sampled, request_id or trace_id[:16])


current_trace: ContextVar[TraceContext | None] = ContextVar("shoal_trace", default=None)


@contextlib.contextmanager
def use_trace(context: TraceContext) -> Iterator[TraceContext]:
    """Make `context` current for the block (a request's handling)."""
    token = current_trace.set(context)
    try:
        yield context
    finally:
        current_trace.reset(token)


def outgoing_headers() -> dict[str, str]:
    """Headers for a call made now: the current trace's child, or a new trace."""
    context = current_trace.get()
    child = context.child() if context is not None else TraceContext.new()
    return {TRACEPARENT_HEADER: child.traceparent, REQUEST_ID_HEADER: child.request_id}
