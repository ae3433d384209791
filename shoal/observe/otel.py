"""OpenTelemetry export of shoal's spans, when the user installs it (`pip install shoal[otel]`).

shoal carries its own W3C trace context (`trace.py`): it needs no tracing library to pass
`traceparent` on. With `opentelemetry-sdk` and the OTLP/HTTP exporter installed *and* an
OTLP endpoint configured by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_TRACES_EXPORTER=none` turns it off), a
service exports

- a SERVER span per request it handles, whose span id is the one the request's trace
  context gave it (so the spans it causes name it as their parent), and
- a CLIENT span per call to another service, whose span id is the `traceparent` the call
  sent (so the callee's SERVER span is its child),

through the SDK's `BatchSpanProcessor` (a background thread; the `OTEL_BSP_*` variables
apply). The spans are built from what shoal already measured (`ReadableSpan`), not by an
OpenTelemetry tracer, so the ids stay shoal's and a request pays nothing when export is
off: `enabled()` is one module attribute read. Without the packages or an endpoint,
`configure` does nothing and every `record` is a no-op.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["SpanEvent", "configure", "enabled", "record_span"]

log = logging.getLogger("shoal.observe")

Kind = Literal["server", "client", "producer", "consumer"]
# (name, time in ns since the epoch, attributes): something that happened during a span
SpanEvent = tuple[str, int, Mapping[str, str | int | float | bool]]

_processor: Any = None  # a BatchSpanProcessor once configured
_resource: Any = None
_lock = threading.Lock()


def enabled() -> bool:
    return _processor is not None


def _wanted() -> bool:
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure(service_name: str) -> bool:
    """Start exporting for this process (once; later calls keep the first name).
    True if spans will be exported."""
    global _processor, _resource
    with _lock:
        if _processor is not None:
            return True
        if not _wanted():
            return False
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "an OTLP endpoint is set but opentelemetry-sdk and "
                "opentelemetry-exporter-otlp-proto-http are not installed "
                "(pip install 'shoal[otel]'): no spans are exported"
            )
            return False
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over the service's own name.
        _resource = Resource.create({"service.name": service_name})
        _processor = BatchSpanProcessor(OTLPSpanExporter())
        atexit.register(_processor.shutdown)
        log.info("exporting spans of %s over OTLP", service_name)
        return True


def record_span(
    name: str,
    kind: Kind,
    *,
    trace_id: str,
    span_id: str,
    parent_id: str | None,
    sampled: bool,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    error: str | None = None,
    events: Sequence[SpanEvent] = (),
) -> None:
    """Export one finished span (ids as shoal's hex strings); a no-op when disabled or
    when the trace is not sampled."""
    processor = _processor
    if processor is None or not sampled:
        return
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    flags = TraceFlags(TraceFlags.SAMPLED)
    trace = int(trace_id, 16)
    context = SpanContext(trace, int(span_id, 16), is_remote=False, trace_flags=flags)
    parent = (
        SpanContext(trace, int(parent_id, 16), is_remote=True, trace_flags=flags)
        if parent_id
        else None
    )
    status = Status(StatusCode.ERROR, error) if error else Status(StatusCode.UNSET)
    span = ReadableSpan(
        name,
        context=context,
        parent=parent,
        resource=_resource,
        attributes=dict(attributes or {}),
        events=[Event(n, dict(a), timestamp=t) for n, t, a in events],
        kind=SpanKind[kind.upper()],
        status=status,
        start_time=start_ns,
        end_time=end_ns,
    )
    processor.on_end(span)
