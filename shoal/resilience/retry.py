"""When to retry an attempt, how long to wait first, and how many retries may run at once.

`RetryPolicy` answers two questions for the attempt that just ended:

1. *May it be retried?* Only while attempts are left (``max_attempts`` counts the first
   one), only for an outcome in ``retry_on`` or a status in ``retry_statuses``, and -- the
   rule that keeps retries safe -- only for an idempotent request unless
   ``retry_non_idempotent`` is set. The one exception: a ``CONNECT_FAILURE`` never reached
   the upstream, so nothing can have been applied twice and it is retryable for any
   request (Envoy's ``connect-failure`` and gRPC's "transparent retry" reason the same way).
   ``TIMEOUT`` and ``RESET`` may have been acted on upstream, so they are not.
2. *How long to back off?* Exponential with **full jitter**: a uniform draw from
   ``[0, min(max_backoff, base_backoff * 2 ** (attempt - 1)))``. Full jitter spreads a
   crowd of clients that failed together over the whole window instead of synchronising
   their retries (the AWS Architecture Blog's "Exponential Backoff And Jitter" measured it
   best of the variants); Envoy draws from ``[0, (2 ** n - 1) * base)`` -- the same idea.

`RetryBudget` is Envoy's ``retry_budget``: retries in flight may be at most ``ratio`` of
the requests in flight, but never fewer than ``min_concurrent``. A fixed "3 retries" turns
an overloaded upstream's trouble into 3x more load; a budget caps the extra load at 20 %
while still letting a quiet client retry. The floor defaults to 10 (Linkerd's), not Envoy's
3: one replica killed with -9 resets every request it holds at once, and each needs its
retry. Callers bracket each logical request with
`request_started` / `request_finished` and each retry with a successful `try_start_retry`
/ `retry_finished`; an unbalanced finish is a caller bug and raises RuntimeError.

Pure and not thread-safe: used from one event loop or under the caller's lock. The RNG is
passed in; nothing here reads a clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ._validate import require_int, require_number
from .outcome import Outcome

# 2 ** 62 * any sane base already exceeds every cap; clamping the exponent keeps a huge
# attempt number from overflowing float conversion.
_MAX_EXPONENT = 62

DEFAULT_RETRY_ON: frozenset[Outcome] = frozenset(
    {Outcome.CONNECT_FAILURE, Outcome.RESET, Outcome.TIMEOUT}
)
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Which attempts are retried, and the backoff before each retry."""

    max_attempts: int = 3
    base_backoff: float = 0.025
    max_backoff: float = 0.25
    retry_on: frozenset[Outcome] = DEFAULT_RETRY_ON
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_non_idempotent: bool = False

    def __post_init__(self) -> None:
        require_int("RetryPolicy", "max_attempts", self.max_attempts, minimum=1)
        require_number("RetryPolicy", "base_backoff", self.base_backoff, minimum=0.0)
        require_number(
            "RetryPolicy", "max_backoff", self.max_backoff, minimum=float(self.base_backoff)
        )
        if not isinstance(self.retry_on, frozenset) or not all(
            isinstance(o, Outcome) for o in self.retry_on
        ):
            raise ValueError(
                f"RetryPolicy.retry_on must be a frozenset of Outcome, got {self.retry_on!r}"
            )
        if Outcome.SUCCESS in self.retry_on:
            raise ValueError("RetryPolicy.retry_on must not contain Outcome.SUCCESS")
        if not isinstance(self.retry_statuses, frozenset):
            raise ValueError(
                "RetryPolicy.retry_statuses must be a frozenset of HTTP statuses, "
                f"got {self.retry_statuses!r}"
            )
        for status in self.retry_statuses:
            # 4xx too: 409 or 429 are retryable by choice (Envoy's retriable-status-codes).
            require_int("RetryPolicy", "retry_statuses item", status, minimum=400, maximum=599)
        if not isinstance(self.retry_non_idempotent, bool):
            raise ValueError(
                "RetryPolicy.retry_non_idempotent must be a bool, "
                f"got {self.retry_non_idempotent!r}"
            )

    def should_retry(
        self, attempt: int, outcome: Outcome, status: int | None, idempotent: bool
    ) -> bool:
        """Whether to retry after ``attempt`` (1-based: the one that just ended).

        ``status`` is the response status when there was one (``FAILURE`` or ``SUCCESS``).
        The budget and the deadline are the caller's to check as well.
        """
        if attempt >= self.max_attempts:
            return False
        if outcome is Outcome.CONNECT_FAILURE:
            # Never reached the upstream: safe to repeat even for a POST.
            return outcome in self.retry_on
        if not (idempotent or self.retry_non_idempotent):
            return False
        if outcome in self.retry_on:
            return True
        return status is not None and status in self.retry_statuses

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before the retry that follows ``attempt`` (1-based), full jitter."""
        exponent = attempt - 1 if attempt < _MAX_EXPONENT else _MAX_EXPONENT
        cap = self.base_backoff * (1 << exponent) if exponent > 0 else self.base_backoff
        if cap > self.max_backoff:
            cap = self.max_backoff
        return rng.random() * cap


class RetryBudget:
    """Envoy's retry budget: concurrent retries <= max(min_concurrent, ratio * requests).

    ``active_requests`` counts logical requests in flight (each once, however many
    attempts it makes); ``active_retries`` counts retry attempts in flight.
    """

    __slots__ = ("_active_requests", "_active_retries", "_min_concurrent", "_ratio")

    def __init__(self, ratio: float = 0.2, min_concurrent: int = 10) -> None:
        require_number("RetryBudget", "ratio", ratio, minimum=0.0, maximum=1.0)
        require_int("RetryBudget", "min_concurrent", min_concurrent, minimum=0)
        self._ratio = float(ratio)
        self._min_concurrent = min_concurrent
        self._active_requests = 0
        self._active_retries = 0

    @property
    def ratio(self) -> float:
        return self._ratio

    @property
    def min_concurrent(self) -> int:
        return self._min_concurrent

    @property
    def active_requests(self) -> int:
        return self._active_requests

    @property
    def active_retries(self) -> int:
        return self._active_retries

    def limit(self) -> int:
        """How many retries may be in flight right now."""
        # The epsilon keeps 0.29 * 100 (28.999999999999996 in binary) at 29.
        by_ratio = math.floor(self._ratio * self._active_requests + 1e-9)
        return by_ratio if by_ratio > self._min_concurrent else self._min_concurrent

    def request_started(self) -> None:
        self._active_requests += 1

    def request_finished(self) -> None:
        if self._active_requests == 0:
            raise RuntimeError("RetryBudget.request_finished without a request_started")
        self._active_requests -= 1

    def try_start_retry(self) -> bool:
        """Take a place for one retry; False means the budget is spent: do not retry."""
        if self._active_retries >= self.limit():
            return False
        self._active_retries += 1
        return True

    def retry_finished(self) -> None:
        if self._active_retries == 0:
            raise RuntimeError("RetryBudget.retry_finished without a try_start_retry")
        self._active_retries -= 1
