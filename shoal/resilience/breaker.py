"""A circuit breaker: resilience4j's closed / open / half-open state machine, sans clock.

Theory of operation
-------------------

``CLOSED``: every call is allowed and its outcome goes into a count-based sliding window of
the last ``window`` calls. Once the window holds at least ``minimum_calls``, the breaker
opens as soon as the share of failed calls reaches ``failure_rate`` or the share of slow
calls (``duration >= slow_call_duration``) reaches ``slow_call_rate``.

``OPEN``: every call is refused until ``open_duration`` has passed since opening; the first
`allow` (or `state`) after that moves to ``HALF_OPEN``. No timer is needed: the transition
is computed from ``now`` when someone asks.

``HALF_OPEN``: at most ``half_open_calls`` probe calls are let through. A probe that fails
(or is slow) reopens the breaker at once; when ``half_open_calls`` probes have succeeded
it closes with an empty window. resilience4j instead waits for all probes and compares
their failure rate with the threshold; shoal reopens on the first bad probe because a
per-host breaker should stop sending to a host that is still broken, not finish a quota.
A permit that was granted but never ran is given back with `release`. If
``half_open_max_wait`` is set, a breaker stuck half-open that long (permits leaked by a
caller that neither recorded nor released) reopens, so it heals itself.

Rules kept
----------

* The caller calls `record` or `release` exactly once for each ``allow() -> True``.
* Outcomes that arrive while ``OPEN``, and outcomes in ``HALF_OPEN`` with no probe in
  flight, belong to calls admitted before the breaker opened: they are ignored (counting
  them would let pre-failure traffic close a breaker, or stale failures reopen it).
* `record` and `allow` do O(1) work and allocate nothing; the trip thresholds per window
  fill level are precomputed as integers, so no float division runs per call.
* ``now`` is seconds on the caller's monotonic clock and is assumed not to go backwards.

Pure and not thread-safe: one breaker is driven from one event loop or under the caller's
lock. A transition listener, if given, is called synchronously on each state change (the
only place a value is allocated), for metrics and logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ._validate import require_int, require_number
from .outcome import FAILURE_OUTCOMES, Outcome


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_SUCCESS = Outcome.SUCCESS
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN

# Bits of one window slot.
_FAILED = 1
_SLOW = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """Tunables of one breaker. See docs/resilience.md for why each default is what it is."""

    window: int = 20
    minimum_calls: int = 10
    failure_rate: float = 0.5
    slow_call_rate: float = 1.0
    slow_call_duration: float | None = None  # None: slow calls are not tracked
    open_duration: float = 5.0
    half_open_calls: int = 3
    half_open_max_wait: float | None = None  # None: wait for the probes however long
    failure_outcomes: frozenset[Outcome] = FAILURE_OUTCOMES

    def __post_init__(self) -> None:
        require_int("BreakerConfig", "window", self.window, minimum=1)
        require_int(
            "BreakerConfig", "minimum_calls", self.minimum_calls, minimum=1, maximum=self.window
        )
        require_number(
            "BreakerConfig",
            "failure_rate",
            self.failure_rate,
            minimum=0.0,
            maximum=1.0,
            min_open=True,
        )
        require_number(
            "BreakerConfig",
            "slow_call_rate",
            self.slow_call_rate,
            minimum=0.0,
            maximum=1.0,
            min_open=True,
        )
        if self.slow_call_duration is not None:
            require_number(
                "BreakerConfig",
                "slow_call_duration",
                self.slow_call_duration,
                minimum=0.0,
                min_open=True,
            )
        require_number(
            "BreakerConfig", "open_duration", self.open_duration, minimum=0.0, min_open=True
        )
        require_int("BreakerConfig", "half_open_calls", self.half_open_calls, minimum=1)
        if self.half_open_max_wait is not None:
            require_number(
                "BreakerConfig",
                "half_open_max_wait",
                self.half_open_max_wait,
                minimum=0.0,
                min_open=True,
            )
        if (
            not isinstance(self.failure_outcomes, frozenset)
            or not self.failure_outcomes
            or not all(isinstance(o, Outcome) for o in self.failure_outcomes)
            or Outcome.SUCCESS in self.failure_outcomes
        ):
            raise ValueError(
                "BreakerConfig.failure_outcomes must be a non-empty frozenset of Outcome "
                f"without SUCCESS, got {self.failure_outcomes!r}"
            )


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """One state change, as handed to the listener."""

    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: str  # "failure_rate", "slow_call_rate", "open_elapsed", "probe_failed", ...


def _trip_table(rate: float, window: int) -> list[int]:
    """For each fill level c (0..window), the fewest bad calls k with k / c >= rate."""
    table = [0] * (window + 1)
    for count in range(1, window + 1):
        k = max(1, math.ceil(rate * count - 1e-9))
        while k > 1 and (k - 1) / count >= rate:
            k -= 1
        while k / count < rate:
            k += 1
        table[count] = k
    table[0] = window + 1  # never trips on an empty window
    return table


class CircuitBreaker:
    """One breaker (per host or per service). See the module docstring for the rules."""

    __slots__ = (
        "_config",
        "_count",
        "_fail_trip",
        "_failed",
        "_failure_outcomes",
        "_half_open_since",
        "_index",
        "_listener",
        "_min_calls",
        "_not_permitted",
        "_open_until",
        "_probe_successes",
        "_probes_in_flight",
        "_ring",
        "_slow",
        "_slow_duration",
        "_slow_trip",
        "_state",
        "_window",
    )

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        on_transition: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        self._config = config = config if config is not None else BreakerConfig()
        self._listener = on_transition
        self._window = config.window
        self._min_calls = config.minimum_calls
        self._failure_outcomes = config.failure_outcomes
        self._slow_duration = config.slow_call_duration
        self._fail_trip = _trip_table(config.failure_rate, config.window)
        self._slow_trip = (
            _trip_table(config.slow_call_rate, config.window)
            if config.slow_call_duration is not None
            else [config.window + 1] * (config.window + 1)
        )
        self._ring = bytearray(config.window)
        self._index = 0
        self._count = 0
        self._failed = 0
        self._slow = 0
        self._state = _CLOSED
        self._open_until = 0.0
        self._half_open_since = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._not_permitted = 0

    # --- the caller's surface ----------------------------------------------------------

    @property
    def config(self) -> BreakerConfig:
        return self._config

    def allow(self, now: float) -> bool:
        """Permission for one call. Each True must be followed by `record` or `release`."""
        state = self._state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            if now < self._open_until:
                self._not_permitted += 1
                return False
            self._to_half_open(now)
        elif self._half_open_expired(now):
            self._not_permitted += 1
            return False
        if self._probes_in_flight + self._probe_successes < self._config.half_open_calls:
            self._probes_in_flight += 1
            return True
        self._not_permitted += 1
        return False

    def record(self, now: float, outcome: Outcome, duration: float) -> None:
        """The outcome of a permitted call that ran for ``duration`` seconds."""
        # Identity first: Enum hashing is a Python-level call, and success is the common case.
        success = outcome is _SUCCESS or outcome not in self._failure_outcomes
        bad = 0 if success else _FAILED
        slow_after = self._slow_duration
        if slow_after is not None and duration >= slow_after:
            bad |= _SLOW
        state = self._state
        if state is _CLOSED:
            ring = self._ring
            index = self._index
            old = ring[index]
            self._index = index + 1 if index + 1 < self._window else 0
            count = self._count
            if count < self._window:
                count += 1
                self._count = count
            if old != bad:
                ring[index] = bad
                self._failed += (bad & _FAILED) - (old & _FAILED)
                self._slow += ((bad & _SLOW) >> 1) - ((old & _SLOW) >> 1)
            if count >= self._min_calls and (self._failed or self._slow):
                if self._failed >= self._fail_trip[count]:
                    self._to_open(now, "failure_rate")
                elif self._slow >= self._slow_trip[count]:
                    self._to_open(now, "slow_call_rate")
        elif state is _HALF_OPEN:
            if self._probes_in_flight == 0:
                return  # a call admitted before the breaker opened
            self._probes_in_flight -= 1
            if bad:
                self._to_open(now, "probe_failed" if bad & _FAILED else "probe_slow")
                return
            self._probe_successes += 1
            if self._probe_successes >= self._config.half_open_calls:
                self._to_closed(now)
        # OPEN: a straggler admitted while closed; its outcome changes nothing.

    def release(self, now: float) -> None:
        """Give back a permit whose call never ran (cancelled before it was sent)."""
        if self._state is _HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    def state(self, now: float) -> BreakerState:
        """The state at ``now``, moving OPEN to HALF_OPEN when the open time is over."""
        if self._state is _OPEN and now >= self._open_until:
            self._to_half_open(now)
        elif self._state is _HALF_OPEN:
            self._half_open_expired(now)
        return self._state

    # --- read-only figures for metrics ------------------------------------------------

    @property
    def buffered_calls(self) -> int:
        """Calls in the closed-state window."""
        return self._count

    @property
    def failure_rate(self) -> float | None:
        """Failed share of the window, or None below ``minimum_calls``."""
        return self._failed / self._count if self._count >= self._min_calls else None

    @property
    def slow_call_rate(self) -> float | None:
        """Slow share of the window, or None below ``minimum_calls``."""
        return self._slow / self._count if self._count >= self._min_calls else None

    @property
    def not_permitted(self) -> int:
        """Calls refused since the breaker was made."""
        return self._not_permitted

    # --- transitions ----------------------------------------------------------------

    def _half_open_expired(self, now: float) -> bool:
        wait = self._config.half_open_max_wait
        if wait is not None and now - self._half_open_since >= wait:
            self._to_open(now, "half_open_max_wait")
            return True
        return False

    def _reset_window(self) -> None:
        ring = self._ring
        for i in range(self._window):
            ring[i] = 0
        self._index = self._count = self._failed = self._slow = 0

    def _to_open(self, now: float, reason: str) -> None:
        previous = self._state
        self._state = _OPEN
        self._open_until = now + self._config.open_duration
        self._probes_in_flight = self._probe_successes = 0
        self._reset_window()
        self._notify(previous, _OPEN, now, reason)

    def _to_half_open(self, now: float) -> None:
        self._state = _HALF_OPEN
        self._half_open_since = now
        self._probes_in_flight = self._probe_successes = 0
        self._notify(_OPEN, _HALF_OPEN, now, "open_elapsed")

    def _to_closed(self, now: float) -> None:
        self._state = _CLOSED
        self._probes_in_flight = self._probe_successes = 0
        self._reset_window()
        self._notify(_HALF_OPEN, _CLOSED, now, "probes_succeeded")

    def _notify(self, old: BreakerState, new: BreakerState, now: float, reason: str) -> None:
        if self._listener is not None:
            self._listener(BreakerTransition(old, new, now, reason))
