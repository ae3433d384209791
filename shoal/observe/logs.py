"""One logging setup for every shoal process: readable lines by default, JSON on request.

    setup_logging("server")                  # shoal server, shoal worker, a service
    SHOAL_LOG_FORMAT=json shoal server ...   # or `--log-format json`

Theory of operation: the stdlib `logging` module is the one way shoal logs (every module
already holds a `logging.getLogger(...)`); this module only decides what a line looks
like. A filter on the handler stamps every record with the current request's trace
(`shoal.observe.current_trace`: trace id, span id, request id) and the process kind, so
a user request can be followed through every hop's lines by its trace id. Two formatters
read those fields:

- ``text`` (default): ``2024-05-01T12:00:00.123Z WARNING shoal.server [server trace=...]
  message``; ``trace=-`` outside a request.
- ``json``: one object per line with ``ts``, ``level``, ``logger``, ``message``,
  ``process``, ``pid``, ``trace_id``, ``span_id``, ``request_id`` (null outside a
  request), ``exc`` (a traceback, when there is one) and any ``extra={...}`` fields a
  call passed, so a log shipper needs no parsing rules.

Rules it keeps:

- Idempotent: a second call replaces shoal's handler, never adds another (a service
  whose app is imported twice must not log every line twice).
- Polite inside someone else's process: with ``respect_existing=True`` (the service SDK),
  an application that configured logging itself keeps its handlers; they only gain the
  trace filter, so their own formats may use ``%(trace_id)s``.
- A bad format name is a `ValueError` that lists the valid ones (the CLI turns it into
  a usage error naming the flag or the variable).
- Never raises while logging: a record whose ``extra`` cannot be encoded is written with
  those values as ``repr``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from .trace import current_trace

__all__ = [
    "ENV_FORMAT",
    "ENV_LEVEL",
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "TraceFilter",
    "resolve_format",
    "setup_logging",
]

# Libraries that log every request at INFO (httpx: each call the SDK makes); quiet unless
# the process asked for DEBUG.
QUIET_LOGGERS = ("httpx", "httpcore")
ENV_FORMAT = "SHOAL_LOG_FORMAT"
ENV_LEVEL = "SHOAL_LOG_LEVEL"
LOG_FORMATS = ("text", "json")

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "trace_id",
    "span_id",
    "request_id",
    "shoal_process",
}


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds: sortable, and the same on every machine."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TraceFilter(logging.Filter):
    """Stamps each record with the current trace and the process kind (never drops one)."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_trace.get()
        record.trace_id = context.trace_id if context is not None else None
        record.span_id = context.span_id if context is not None else None
        record.request_id = context.request_id if context is not None else None
        record.shoal_process = self.process
        return True


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER [PROCESS trace=ID] MESSAGE`` and the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        trace = getattr(record, "trace_id", None) or "-"
        process = getattr(record, "shoal_process", "")
        line = (
            f"{_timestamp(record)} {record.levelname:<7} {record.name} "
            f"[{process} trace={trace}] {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": getattr(record, "shoal_process", ""),
            "pid": record.process,
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(out, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            return json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=repr)


def resolve_format(given: str | None = None) -> str:
    """`given`, else `$SHOAL_LOG_FORMAT`, else ``text``; a `ValueError` if not known."""
    raw = given if given is not None else os.environ.get(ENV_FORMAT, "")
    name = raw.strip().lower() or "text"
    if name not in LOG_FORMATS:
        source = "--log-format" if given is not None else ENV_FORMAT
        known = ", ".join(LOG_FORMATS)
        raise ValueError(f"{source}: {raw!r} is not a log format; use one of {known}")
    return name


def _level(level: int | str | None) -> int:
    raw = level if level is not None else os.environ.get(ENV_LEVEL, "") or logging.INFO
    if isinstance(raw, int):
        return raw
    number = logging.getLevelName(raw.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"{ENV_LEVEL}: {raw!r} is not a log level (debug, info, warning, error)")
    return number


class _ShoalHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so a second setup replaces it."""


def setup_logging(
    process: str,
    *,
    log_format: str | None = None,
    level: int | str | None = None,
    stream: TextIO | None = None,
    respect_existing: bool = False,
) -> logging.Handler | None:
    """Configure the root logger for a shoal process (see the module docstring).

    `process` names the kind of process in every line (``server``, ``worker``, or a
    service's name). Returns the installed handler, or None when `respect_existing` left
    an application's own handlers in place (they get the trace filter only).
    """
    name = resolve_format(log_format)
    root = logging.getLogger()
    trace_filter = TraceFilter(process)
    foreign = [h for h in root.handlers if not isinstance(h, _ShoalHandler)]
    if respect_existing and foreign:
        for handler in foreign:
            for old in [f for f in handler.filters if isinstance(f, TraceFilter)]:
                handler.removeFilter(old)
            handler.addFilter(trace_filter)
        return None
    for ours in [h for h in root.handlers if isinstance(h, _ShoalHandler)]:
        root.removeHandler(ours)
    handler = _ShoalHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if name == "json" else TextFormatter())
    handler.addFilter(trace_filter)
    root.addHandler(handler)
    number = _level(level)
    root.setLevel(number)
    quiet = logging.DEBUG if number <= logging.DEBUG else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    return handler
