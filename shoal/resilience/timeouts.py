"""How long one attempt may take, given the call's overall deadline.

A call has an *overall* timeout (the whole call, retries and backoff included -- Envoy's
route ``timeout``, 15 s by default) and an optional *per-attempt* timeout (Envoy's
``per_try_timeout``). An attempt gets the per-attempt timeout or whatever is left of the
overall deadline, whichever is shorter, so a retry never outlives the call.

Rules kept:

* ``attempt_timeout`` never exceeds the overall deadline's remainder; a result of 0 or less
  means the deadline has passed and no attempt (and no retry) should start;
* ``None`` means "no limit" for ``overall`` and "the rest of overall" for ``per_attempt``;
* a per-attempt timeout longer than the overall one is refused: it could never apply and
  is always a misconfiguration.

Pure: ``started`` and ``now`` are seconds on the caller's monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._validate import require_number


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """The overall and per-attempt timeouts of one call, in seconds."""

    overall: float | None = 15.0
    per_attempt: float | None = None

    def __post_init__(self) -> None:
        if self.overall is not None:
            require_number("Timeouts", "overall", self.overall, minimum=0.0, min_open=True)
        if self.per_attempt is not None:
            require_number("Timeouts", "per_attempt", self.per_attempt, minimum=0.0, min_open=True)
            if self.overall is not None and self.per_attempt > self.overall:
                raise ValueError(
                    f"Timeouts.per_attempt must be <= overall ({self.overall!r}), "
                    f"got {self.per_attempt!r}"
                )

    def deadline(self, started: float) -> float | None:
        """The instant the whole call must be over by, or None for no deadline."""
        return None if self.overall is None else started + self.overall

    def remaining(self, started: float, now: float) -> float | None:
        """Seconds left of the overall deadline (<= 0 once passed), or None for no limit."""
        return None if self.overall is None else started + self.overall - now

    def attempt_timeout(self, started: float, now: float) -> float | None:
        """Seconds this attempt may take (<= the overall deadline's remainder).

        0 or less means the deadline has passed; None means no limit at all.
        """
        if self.overall is None:
            return self.per_attempt
        left = started + self.overall - now
        if self.per_attempt is None or left < self.per_attempt:
            return left
        return self.per_attempt
