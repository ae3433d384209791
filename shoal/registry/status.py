"""Health status of an instance: passing, warning or critical, with why and since when.

``warning`` means degraded but serving: it counts as healthy for discovery. Only
``critical`` takes an instance out of ``healthy=true`` results. Times are Unix seconds
given by the caller (this package never reads a clock).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from .errors import RegistryError

MAX_REASON = 512


class HealthStatus(enum.Enum):
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def is_healthy(self) -> bool:
        return self is not HealthStatus.CRITICAL


def parse_status(value: object, field: str = "status") -> HealthStatus:
    try:
        return HealthStatus(value)
    except ValueError:
        names = ", ".join(s.value for s in HealthStatus)
        raise RegistryError(field, f"must be one of {names}, got {value!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """The current status, the reason for it, and when it last changed (Unix seconds)."""

    status: HealthStatus
    reason: str
    since: float

    def __post_init__(self) -> None:
        if not isinstance(self.status, HealthStatus):
            raise RegistryError("health.status", f"not a HealthStatus: {self.status!r}")
        if not isinstance(self.reason, str) or len(self.reason) > MAX_REASON:
            raise RegistryError("health.reason", f"must be a string of at most {MAX_REASON}")
        if not math.isfinite(self.since) or self.since < 0:
            raise RegistryError("health.since", f"must be a time in Unix seconds: {self.since}")

    def changed(self, status: HealthStatus, reason: str, now: float) -> Health:
        """The health after a check saw `status`; `since` moves only when the status does."""
        reason = reason[:MAX_REASON]
        if status is self.status:
            return Health(status=status, reason=reason, since=self.since)
        return Health(status=status, reason=reason, since=now)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason, "since": self.since}

    @classmethod
    def from_json(cls, data: Any) -> Health:
        if not isinstance(data, dict):
            raise RegistryError("health", "must be an object")
        since = data.get("since")
        if isinstance(since, bool) or not isinstance(since, int | float):
            raise RegistryError("health.since", "must be a number")
        return cls(
            status=parse_status(data.get("status"), "health.status"),
            reason=str(data.get("reason", "")),
            since=float(since),
        )
