"""One request's attempts: the policies composed into a plan the shells carry out.

    plan = CallPlan(policy, pool, idempotent=True, now=now, rng=rng)
    while True:
        step = plan.next(now)
        if isinstance(step, Done): ...           # return step.response, or raise step.error
        elif isinstance(step, Backoff): sleep(step.delay)
        else:                                    # an Attempt: send it to step.host
            plan.record(step, now, outcome, status, response)

Theory of operation. A call is a sequence of attempts within one overall deadline
(`Timeouts`). Each attempt goes to a host the pool chooses -- its balancer, minus the
hosts this call already tried, minus ejected hosts and hosts whose breaker refuses --
with the smaller of the per-attempt timeout and what is left of the deadline. After an
attempt, the breaker, the outlier detector and the balancer learn its outcome (in the
pool), and the plan decides: done, or retry after a full-jitter backoff when the
`RetryPolicy` allows it (idempotent requests only, unless nothing was sent), the
deadline leaves room, and the `RetryBudget` admits one more retry in flight -- except
after a connection that was never made, which the upstream never saw (still bounded by
`max_attempts`).

`Done` carries what the caller gets: the last response if there was one (a 503 after
the retries ran out is still the upstream's answer), else the reason there is none
(`NoHost`, `BudgetExhausted`, `DeadlineExceeded`, or the last attempt's outcome).

Pure: no I/O, no clock, no threads; `now` and the RNG come in. The pool is the caller's
(`Pool`), so the same plan drives the service SDK and the gateway; the pool locks what
it shares between calls.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .breaker import BreakerConfig
from .outcome import Outcome
from .outlier import OutlierConfig
from .retry import RetryBudget, RetryPolicy
from .timeouts import Timeouts

__all__ = [
    "Attempt",
    "Backoff",
    "CallPlan",
    "CallPolicy",
    "Done",
    "Pool",
    "StopReason",
]

R = TypeVar("R")
_INFINITY = float("inf")
_SUCCESS = Outcome.SUCCESS


@dataclass(frozen=True, slots=True, kw_only=True)
class CallPolicy:
    """Everything that decides how one upstream is called (see docs/resilience.md)."""

    timeouts: Timeouts = Timeouts(overall=15.0, per_attempt=5.0)
    retry: RetryPolicy = RetryPolicy()
    budget_ratio: float = 0.2
    budget_min_concurrent: int = 10
    breaker: BreakerConfig | None = BreakerConfig()  # per host; None: no breakers
    outlier: OutlierConfig | None = OutlierConfig()  # None: no ejection

    def new_budget(self) -> RetryBudget:
        return RetryBudget(self.budget_ratio, self.budget_min_concurrent)


class Pool(Protocol):
    """The hosts of one upstream and their shared state, as a call plan needs them.

    `choose` picks a host not in `exclude` that may take a call now (not ejected, breaker
    admitting it -- a host returned has taken the breaker's permit), or None. `finished`
    reports the attempt to the balancer, breaker and outlier detector; `abandoned` gives
    a permit back for an attempt that never ran. The rest is the upstream's retry budget
    (`RetryBudget`'s methods): `request_started` returns the budget the call counts
    against, which the plan hands back to the other three, so a policy reload that
    replaces the budget cannot unbalance it. Calls on many threads share a pool: it locks
    its state.
    """

    def request_started(self) -> RetryBudget: ...

    def request_finished(self, budget: RetryBudget) -> None: ...

    def try_start_retry(self, budget: RetryBudget) -> bool: ...

    def retry_finished(self, budget: RetryBudget) -> None: ...

    def choose(
        self, now: float, key: str | bytes | None, exclude: Collection[str]
    ) -> str | None: ...

    def finished(self, host: str, now: float, outcome: Outcome, latency: float) -> None: ...

    def abandoned(self, host: str, now: float) -> None: ...


# Attempt, Backoff, Done and CallPlan are plain slotted classes, not dataclasses: every
# call makes a plan, an attempt and a done, and a frozen dataclass's __init__ stores each
# field through object.__setattr__ -- about a microsecond a call for the four together,
# on a path (the gateway's) that has ~20 us in all. Treat Attempt, Backoff and Done as
# immutable: nothing in shoal writes to them after construction.


class Attempt:
    __slots__ = ("host", "number", "started", "timeout")

    def __init__(self, number: int, host: str, timeout: float, started: float) -> None:
        self.number = number  # 1-based
        self.host = host
        self.timeout = timeout  # seconds this attempt may take
        self.started = started

    def __repr__(self) -> str:
        return (
            f"Attempt(number={self.number!r}, host={self.host!r}, "
            f"timeout={self.timeout!r}, started={self.started!r})"
        )


class Backoff:
    __slots__ = ("delay",)

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __repr__(self) -> str:
        return f"Backoff(delay={self.delay!r})"


class StopReason:
    """Why a call ended without a response (`Done.reason`)."""

    NO_HOST = "no_host"  # nothing to send to: empty pool, or every host refused
    BUDGET_EXHAUSTED = "budget_exhausted"  # a retry was due but the budget said no
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the overall timeout passed
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # the last attempt failed, no retry left


class Done(Generic[R]):
    __slots__ = ("attempts", "outcome", "reason", "response", "status")

    def __init__(
        self,
        response: R | None,
        reason: str | None = None,
        outcome: Outcome | None = None,
        status: int | None = None,
        attempts: int = 0,
    ) -> None:
        self.response = response  # the last response, if any attempt got one
        self.reason = reason  # a StopReason when there is no usable response
        self.outcome = outcome  # the last attempt's outcome
        self.status = status
        self.attempts = attempts

    @property
    def ok(self) -> bool:
        return self.response is not None

    def __repr__(self) -> str:
        return (
            f"Done(response={self.response!r}, reason={self.reason!r}, "
            f"outcome={self.outcome!r}, status={self.status!r}, attempts={self.attempts!r})"
        )


class CallPlan(Generic[R]):
    """The attempts of one call; see the module docstring."""

    __slots__ = (
        "_attempts",
        "_budget",
        "_done",
        "_due",
        "_last",
        "_pending",
        "_retries_in_flight",
        "_tried",
        "idempotent",
        "key",
        "now",
        "policy",
        "pool",
        "rng",
    )

    def __init__(
        self,
        policy: CallPolicy,
        pool: Pool,
        idempotent: bool,
        now: float,
        rng: random.Random,
        key: str | bytes | None = None,
    ) -> None:
        self.policy, self.pool, self.idempotent = policy, pool, idempotent
        self.now, self.rng, self.key = now, rng, key
        self._tried: set[str] = set()
        self._attempts = 0
        self._retries_in_flight = 0
        self._pending: Attempt | None = None
        self._due = True  # an attempt may start (backoff done)
        self._done: Done[R] | None = None
        self._last: tuple[Outcome, int | None, R | None] | None = None
        self._budget: RetryBudget = pool.request_started()

    # -- the shell asks -----------------------------------------------------------------

    def next(self, now: float) -> Attempt | Backoff | Done[R]:
        if self._done is not None:
            return self._done
        if self._pending is not None:
            raise RuntimeError("record the pending attempt before asking for the next step")
        if not self._due:
            self._due = True
            # A retry after a connection that was never made is "transparent" (gRPC's
            # term): the upstream never saw the request, so it costs the upstream nothing
            # and does not count against the budget that protects it.
            transparent = self._last is not None and self._last[0] is Outcome.CONNECT_FAILURE
            if not transparent:
                if not self.pool.try_start_retry(self._budget):
                    return self._finish(StopReason.BUDGET_EXHAUSTED)
                self._retries_in_flight += 1
            delay = self.policy.retry.backoff(self._attempts, self.rng)
            if delay > 0:
                return Backoff(delay)
        timeout = self.policy.timeouts.attempt_timeout(self.now, now)
        if timeout is None:
            timeout = _INFINITY
        elif timeout <= 0:
            return self._finish(StopReason.DEADLINE_EXCEEDED)
        tried = self._tried
        host = self.pool.choose(now, self.key, tried)
        if host is None and tried:
            # Every host was tried once: a retry may go back to one rather than give up
            # (a pool of one retries the same host, as Envoy does without a host predicate).
            host = self.pool.choose(now, self.key, ())
        if host is None:
            return self._finish(StopReason.NO_HOST)
        self._attempts = number = self._attempts + 1
        tried.add(host)
        self._pending = attempt = Attempt(number, host, timeout, now)
        return attempt

    def record(
        self,
        attempt: Attempt,
        now: float,
        outcome: Outcome,
        status: int | None = None,
        response: R | None = None,
    ) -> None:
        """What `attempt` came to; `response` is what the caller gets if it is the last."""
        if attempt is not self._pending:
            raise RuntimeError("record the attempt the plan handed out, once")
        self._pending = None
        self.pool.finished(attempt.host, now, outcome, now - attempt.started)
        self._last = (outcome, status, response)
        if self._retries_in_flight:
            self._retries_in_flight -= 1
            self.pool.retry_finished(self._budget)
        if outcome is _SUCCESS and (
            status is None or status not in self.policy.retry.retry_statuses
        ):
            self._finish(None)
            return
        if not self.policy.retry.should_retry(attempt.number, outcome, status, self.idempotent):
            self._finish(StopReason.ATTEMPTS_EXHAUSTED if response is None else None)
            return
        self._due = False  # the next step is a retry, after its backoff

    def cancel(self, attempt: Attempt | None, now: float) -> Done[R]:
        """The caller gave up (e.g. cancelled): release what the plan holds."""
        if attempt is not None and attempt is self._pending:
            self._pending = None
            self.pool.abandoned(attempt.host, now)
            if self._retries_in_flight:
                self._retries_in_flight -= 1
                self.pool.retry_finished(self._budget)
        return self._finish(StopReason.DEADLINE_EXCEEDED)

    @property
    def attempts(self) -> int:
        return self._attempts

    # -- the end ------------------------------------------------------------------------

    def _finish(self, reason: str | None) -> Done[R]:
        if self._done is not None:
            return self._done
        while self._retries_in_flight:
            self._retries_in_flight -= 1
            self.pool.retry_finished(self._budget)
        self.pool.request_finished(self._budget)
        outcome, status, response = self._last if self._last is not None else (None, None, None)
        if reason is None and response is None:
            reason = StopReason.ATTEMPTS_EXHAUSTED
        self._done = Done(response, reason, outcome, status, self._attempts)
        return self._done
