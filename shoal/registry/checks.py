"""Health check definitions and the rise/fall state machine (pure: no I/O, no clock).

A check is parsed from the JSON a registration carries, e.g. ``{"type": "http",
"path": "/healthz", "interval": "1s", "timeout": "500ms", "fall": 2, "rise": 1}``;
durations are strings (``250ms``, ``1s``, ``1.5m``, ``1h``) or numbers of seconds.

Theory of operation of `observe`: a checker feeds each probe result in. ``fall``
consecutive failures make an instance critical; ``rise`` consecutive successes make it
passing again. A single result never flips a status on its own unless the threshold is 1,
so one lost probe does not take an instance out of discovery. The function returns the
next state; the caller compares the status with the stored one and writes on change.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from .errors import RegistryError
from .status import HealthStatus

CheckType = Literal["http", "tcp", "ttl"]
CHECK_TYPES: tuple[CheckType, ...] = ("http", "tcp", "ttl")
ACTIVE_CHECK_TYPES = frozenset({"http", "tcp"})

MIN_INTERVAL = 0.05
MAX_DURATION = 30 * 24 * 3600.0
MAX_THRESHOLD = 100

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_FIELDS: dict[str, frozenset[str]] = {
    "http": frozenset({"type", "path", "interval", "timeout", "fall", "rise"}),
    "tcp": frozenset({"type", "interval", "timeout", "fall", "rise"}),
    "ttl": frozenset({"type", "ttl"}),
}


def check_encodable(text: str, field: str) -> None:
    """Refuse text that UTF-8 cannot encode: a lone UTF-16 surrogate (JSON `"\ud800"`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RegistryError(
            field, f"holds a lone UTF-16 surrogate at character {error.start}, not Unicode text"
        ) from None


def parse_duration(value: object, field: str) -> float:
    """Seconds from ``"500ms"``, ``"1s"``, ``"2m"``, ``"1h"`` or a number of seconds."""
    if isinstance(value, bool):
        raise RegistryError(field, f"expected a duration like '1s' or '250ms', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise RegistryError(field, f"expected a duration like '1s' or '250ms', got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise RegistryError(field, f"must be a positive duration, got {value!r}")
    if seconds > MAX_DURATION:
        raise RegistryError(field, f"must be at most 30 days, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The canonical text of a duration: whole milliseconds below a second, else seconds."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckSpec:
    """How an instance's health is judged. ``ttl`` checks are heartbeats on a lease."""

    type: CheckType
    path: str = "/healthz"
    interval: float = 10.0
    timeout: float = 1.0
    fall: int = 2
    rise: int = 1
    ttl: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in CHECK_TYPES:
            raise RegistryError("check.type", f"must be one of {', '.join(CHECK_TYPES)}")
        if self.type == "ttl":
            if not self.ttl > 0:
                raise RegistryError("check.ttl", "a ttl check needs a positive ttl")
            return
        if not isinstance(self.path, str):
            raise RegistryError("check.path", "must be a string")
        check_encodable(self.path, "check.path")
        if not self.path.startswith("/") or any(c.isspace() for c in self.path):
            raise RegistryError(
                "check.path", f"must start with '/' and hold no spaces: {self.path!r}"
            )
        if self.interval < MIN_INTERVAL:
            raise RegistryError("check.interval", f"must be at least {MIN_INTERVAL * 1000:g}ms")
        if not 0 < self.timeout <= self.interval:
            raise RegistryError("check.timeout", "must be positive and at most the interval")
        for name in ("fall", "rise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise RegistryError(f"check.{name}", f"must be an integer, got {value!r}")
            if not 1 <= value <= MAX_THRESHOLD:
                raise RegistryError(f"check.{name}", f"must be between 1 and {MAX_THRESHOLD}")

    @property
    def is_active(self) -> bool:
        """Probed by the control plane (http/tcp), as opposed to heartbeated (ttl)."""
        return self.type in ACTIVE_CHECK_TYPES

    @property
    def lease_ttl(self) -> int:
        """The whole-second lease TTL a ttl check needs (leases count whole seconds)."""
        return max(1, math.ceil(self.ttl))

    def to_json(self) -> dict[str, Any]:
        if self.type == "ttl":
            return {"type": "ttl", "ttl": format_duration(self.ttl)}
        out: dict[str, Any] = {"type": self.type}
        if self.type == "http":
            out["path"] = self.path
        out.update(
            interval=format_duration(self.interval),
            timeout=format_duration(self.timeout),
            fall=self.fall,
            rise=self.rise,
        )
        return out


def parse_check(data: object) -> CheckSpec:
    """A `CheckSpec` from its JSON form; unknown fields and bad values name the field."""
    if not isinstance(data, dict):
        raise RegistryError("check", f"must be an object, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in _FIELDS:
        raise RegistryError("check.type", f"must be one of {', '.join(CHECK_TYPES)}, got {kind!r}")
    unknown = sorted(set(data) - _FIELDS[kind])
    if unknown:
        raise RegistryError(f"check.{unknown[0]}", f"unknown field for a {kind} check")
    if kind == "ttl":
        if "ttl" not in data:
            raise RegistryError("check.ttl", "a ttl check needs a ttl, e.g. '3s'")
        return CheckSpec(type="ttl", ttl=parse_duration(data["ttl"], "check.ttl"))
    fields: dict[str, Any] = {"type": kind}
    if "path" in data:
        if not isinstance(data["path"], str):
            raise RegistryError("check.path", "must be a string")
        fields["path"] = data["path"]
    for name in ("interval", "timeout"):
        if name in data:
            fields[name] = parse_duration(data[name], f"check.{name}")
    if "timeout" not in fields and "interval" in fields:
        fields["timeout"] = min(1.0, fields["interval"])
    for name in ("fall", "rise"):
        if name in data:
            fields[name] = data[name]
    return CheckSpec(**fields)


@dataclass(frozen=True, slots=True)
class CheckState:
    """What a checker remembers about one instance between probes."""

    status: HealthStatus
    successes: int = 0  # consecutive
    failures: int = 0  # consecutive


def observe(state: CheckState, ok: bool, *, rise: int, fall: int) -> CheckState:
    """The state after one probe result: ``fall`` failures in a row make it critical,
    ``rise`` successes in a row make it passing; otherwise the status holds."""
    if ok:
        successes = state.successes + 1
        status = HealthStatus.PASSING if successes >= rise else state.status
        return replace(state, status=status, successes=successes, failures=0)
    failures = state.failures + 1
    status = HealthStatus.CRITICAL if failures >= fall else state.status
    return replace(state, status=status, successes=0, failures=failures)
