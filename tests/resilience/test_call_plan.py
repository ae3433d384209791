"""The attempt plan of one call, driven by hand with a fake clock and a scripted pool."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.resilience import Outcome, RetryBudget, RetryPolicy, Timeouts
from shoal.resilience.call import Attempt, Backoff, CallPlan, CallPolicy, Done, StopReason


@dataclass
class ScriptedPool:
    """Hosts in a fixed order; records what the plan told it."""

    hosts: list[str]
    budget: RetryBudget = field(default_factory=RetryBudget)
    refused: set[str] = field(default_factory=set)
    finished_log: list[tuple[str, Outcome]] = field(default_factory=list)
    abandoned_log: list[str] = field(default_factory=list)

    def request_started(self) -> RetryBudget:
        self.budget.request_started()
        return self.budget

    def request_finished(self, budget: RetryBudget) -> None:
        budget.request_finished()

    def try_start_retry(self, budget: RetryBudget) -> bool:
        return budget.try_start_retry()

    def retry_finished(self, budget: RetryBudget) -> None:
        budget.retry_finished()

    def choose(self, now: float, key: str | bytes | None, exclude: Collection[str]) -> str | None:
        for host in self.hosts:
            if host not in exclude and host not in self.refused:
                return host
        return None

    def finished(self, host: str, now: float, outcome: Outcome, latency: float) -> None:
        self.finished_log.append((host, outcome))

    def abandoned(self, host: str, now: float) -> None:
        self.abandoned_log.append(host)


def policy(**retry: object) -> CallPolicy:
    return CallPolicy(
        timeouts=Timeouts(overall=10.0, per_attempt=2.0),
        retry=RetryPolicy(**retry),  # type: ignore[arg-type]
    )


def run(
    plan: CallPlan[str], outcomes: list[tuple[Outcome, int | None]], start: float = 0.0
) -> tuple[Done[str], list[Attempt]]:
    """Drive `plan`, answering attempts with `outcomes` in turn; time moves 0.1 s a step."""
    now, attempts = start, []
    script = iter(outcomes)
    while True:
        step = plan.next(now)
        if isinstance(step, Done):
            return step, attempts
        if isinstance(step, Backoff):
            assert 0 <= step.delay <= 0.25
            now += step.delay
            continue
        attempts.append(step)
        outcome, status = next(script)
        now += 0.1
        plan.record(step, now, outcome, status, None if status is None else f"{step.host}:{status}")


def test_success_on_the_first_attempt() -> None:
    pool = ScriptedPool(["a", "b"])
    plan: CallPlan[str] = CallPlan(policy(), pool, True, 0.0, random.Random(1))
    done, attempts = run(plan, [(Outcome.SUCCESS, 200)])
    assert done.response == "a:200" and done.reason is None and done.attempts == 1
    assert [a.host for a in attempts] == ["a"] and attempts[0].timeout == 2.0
    assert pool.budget.active_requests == 0


def test_a_connection_failure_is_retried_on_another_host_even_for_a_post() -> None:
    pool = ScriptedPool(["a", "b", "c"])
    plan: CallPlan[str] = CallPlan(policy(), pool, False, 0.0, random.Random(1))
    done, attempts = run(plan, [(Outcome.CONNECT_FAILURE, None), (Outcome.SUCCESS, 201)])
    assert done.response == "b:201"
    assert [a.host for a in attempts] == ["a", "b"]
    assert pool.finished_log == [("a", Outcome.CONNECT_FAILURE), ("b", Outcome.SUCCESS)]


def test_a_post_that_may_have_been_applied_is_not_retried() -> None:
    pool = ScriptedPool(["a", "b"])
    plan: CallPlan[str] = CallPlan(policy(), pool, False, 0.0, random.Random(1))
    done, attempts = run(plan, [(Outcome.RESET, None)])
    assert done.response is None and done.reason == StopReason.ATTEMPTS_EXHAUSTED
    assert done.outcome is Outcome.RESET and len(attempts) == 1


def test_retryable_status_is_retried_and_the_last_answer_returned_when_attempts_run_out() -> None:
    pool = ScriptedPool(["a", "b", "c"])
    plan: CallPlan[str] = CallPlan(policy(max_attempts=3), pool, True, 0.0, random.Random(1))
    done, attempts = run(plan, [(Outcome.FAILURE, 503)] * 3)
    assert [a.host for a in attempts] == ["a", "b", "c"]
    assert done.response == "c:503"  # the upstream's answer, not an error
    assert pool.budget.active_requests == 0 and pool.budget.active_retries == 0


def test_a_500_is_not_retried_by_default_but_a_404_is_a_success() -> None:
    pool = ScriptedPool(["a", "b"])
    done, attempts = run(
        CallPlan(policy(), pool, True, 0.0, random.Random(1)), [(Outcome.FAILURE, 500)]
    )
    assert done.response == "a:500" and len(attempts) == 1
    done, _ = run(CallPlan(policy(), pool, True, 0.0, random.Random(1)), [(Outcome.SUCCESS, 404)])
    assert done.response == "a:404"


def test_a_pool_of_one_retries_the_same_host() -> None:
    pool = ScriptedPool(["only"])
    plan: CallPlan[str] = CallPlan(policy(), pool, True, 0.0, random.Random(1))
    done, attempts = run(plan, [(Outcome.TIMEOUT, None), (Outcome.SUCCESS, 200)])
    assert [a.host for a in attempts] == ["only", "only"] and done.response == "only:200"


def test_no_host_ends_the_call_at_once() -> None:
    pool = ScriptedPool([])
    done, attempts = run(CallPlan(policy(), pool, True, 0.0, random.Random(1)), [])
    assert done.reason == StopReason.NO_HOST and attempts == []
    assert pool.budget.active_requests == 0


def test_the_overall_deadline_caps_each_attempt_and_stops_retries() -> None:
    pool = ScriptedPool(["a", "b", "c"])
    slow = CallPolicy(
        timeouts=Timeouts(overall=1.0, per_attempt=0.8), retry=RetryPolicy(max_attempts=5)
    )
    plan: CallPlan[str] = CallPlan(slow, pool, True, 0.0, random.Random(1))
    first = plan.next(0.0)
    assert isinstance(first, Attempt) and first.timeout == 0.8
    plan.record(first, 0.8, Outcome.TIMEOUT)
    step = plan.next(0.8)
    while isinstance(step, Backoff):
        step = plan.next(0.8 + step.delay)
    assert isinstance(step, Attempt) and step.timeout == pytest.approx(0.2, abs=0.26)
    plan.record(step, 1.0, Outcome.TIMEOUT)
    end = plan.next(1.0)
    while isinstance(end, Backoff):
        end = plan.next(1.0 + end.delay)
    assert isinstance(end, Done) and end.reason == StopReason.DEADLINE_EXCEEDED


def test_the_retry_budget_refuses_retries_beyond_its_share() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrent=1)
    pool = ScriptedPool(["a", "b"], budget=budget)
    plans: list[CallPlan[str]] = [
        CallPlan(policy(), pool, True, 0.0, random.Random(i)) for i in range(3)
    ]
    attempts = [p.next(0.0) for p in plans]
    for plan, attempt in zip(plans, attempts, strict=True):
        assert isinstance(attempt, Attempt)
        plan.record(attempt, 0.1, Outcome.TIMEOUT)
    # Three requests in flight allow max(1, 0.6) = 1 retry at a time.
    steps = [p.next(0.1) for p in plans]
    refused = [s for s in steps if isinstance(s, Done)]
    assert len(refused) == 2 and all(s.reason == StopReason.BUDGET_EXHAUSTED for s in refused)


def test_cancel_gives_the_permit_back_and_releases_the_budget() -> None:
    pool = ScriptedPool(["a"])
    plan: CallPlan[str] = CallPlan(policy(), pool, True, 0.0, random.Random(1))
    attempt = plan.next(0.0)
    assert isinstance(attempt, Attempt)
    done = plan.cancel(attempt, 0.5)
    assert pool.abandoned_log == ["a"] and done.reason == StopReason.DEADLINE_EXCEEDED
    assert pool.budget.active_requests == 0


def test_misuse_is_refused() -> None:
    plan: CallPlan[str] = CallPlan(policy(), ScriptedPool(["a"]), True, 0.0, random.Random(1))
    attempt = plan.next(0.0)
    with pytest.raises(RuntimeError):
        plan.next(0.0)  # the pending attempt was not recorded
    assert isinstance(attempt, Attempt)
    plan.record(attempt, 0.1, Outcome.SUCCESS, 200, "ok")
    with pytest.raises(RuntimeError):
        plan.record(attempt, 0.1, Outcome.SUCCESS, 200, "ok")


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(
        st.sampled_from(
            [
                (Outcome.SUCCESS, 200),
                (Outcome.FAILURE, 503),
                (Outcome.FAILURE, 500),
                (Outcome.TIMEOUT, None),
                (Outcome.RESET, None),
                (Outcome.CONNECT_FAILURE, None),
            ]
        ),
        min_size=5,
        max_size=5,
    ),
    idempotent=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_call_ends_within_its_attempts_and_balances_the_budget(
    outcomes: list[tuple[Outcome, int | None]], idempotent: bool, seed: int
) -> None:
    pool = ScriptedPool(["a", "b", "c"])
    plan: CallPlan[str] = CallPlan(
        policy(max_attempts=3), pool, idempotent, 0.0, random.Random(seed)
    )
    done, attempts = run(plan, outcomes)
    assert 1 <= len(attempts) <= 3
    assert pool.budget.active_requests == 0 and pool.budget.active_retries == 0
    last_outcome, last_status = outcomes[len(attempts) - 1]
    assert done.outcome is last_outcome
    assert (done.response is not None) == (last_status is not None)
    if not idempotent:  # only connection failures may have been retried
        assert all(o is Outcome.CONNECT_FAILURE for o, _ in outcomes[: len(attempts) - 1])


def test_a_retry_after_a_connection_never_made_does_not_spend_the_budget() -> None:
    budget = RetryBudget(ratio=0.0, min_concurrent=1)
    budget.request_started()
    assert budget.try_start_retry()  # someone else holds the only retry slot
    pool = ScriptedPool(["a", "b", "c"], budget=budget)
    plan: CallPlan[str] = CallPlan(policy(), pool, True, 0.0, random.Random(1))
    done, attempts = run(plan, [(Outcome.CONNECT_FAILURE, None), (Outcome.SUCCESS, 200)])
    assert done.response == "b:200" and len(attempts) == 2
    refused: CallPlan[str] = CallPlan(policy(), pool, True, 0.0, random.Random(1))
    done, _ = run(refused, [(Outcome.TIMEOUT, None)])
    assert done.reason == StopReason.BUDGET_EXHAUSTED  # a timeout's retry still needs a slot
