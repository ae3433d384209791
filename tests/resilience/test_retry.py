"""RetryPolicy (which attempts, full-jitter backoff) and RetryBudget (Envoy's budget)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.resilience import Outcome, RetryBudget, RetryPolicy

ALL_OUTCOMES = list(Outcome)


# --- should_retry ----------------------------------------------------------------------


def test_defaults() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 3
    assert (p.base_backoff, p.max_backoff) == (0.025, 0.25)
    assert p.retry_on == {Outcome.CONNECT_FAILURE, Outcome.RESET, Outcome.TIMEOUT}
    assert p.retry_statuses == {502, 503, 504}
    assert p.retry_non_idempotent is False


def test_retries_stop_at_max_attempts_counting_the_first() -> None:
    p = RetryPolicy(max_attempts=3)
    assert p.should_retry(1, Outcome.RESET, None, idempotent=True)
    assert p.should_retry(2, Outcome.RESET, None, idempotent=True)
    assert not p.should_retry(3, Outcome.RESET, None, idempotent=True)
    assert not RetryPolicy(max_attempts=1).should_retry(1, Outcome.RESET, None, True)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_statuses_are_retried(status: int) -> None:
    assert RetryPolicy().should_retry(1, Outcome.FAILURE, status, idempotent=True)


@pytest.mark.parametrize("status", [500, 501, 505])
def test_other_server_errors_are_not_retried_by_default(status: int) -> None:
    assert not RetryPolicy().should_retry(1, Outcome.FAILURE, status, idempotent=True)


def test_failure_in_retry_on_retries_every_5xx() -> None:
    p = RetryPolicy(retry_on=frozenset({Outcome.FAILURE}), retry_statuses=frozenset())
    assert p.should_retry(1, Outcome.FAILURE, 500, idempotent=True)
    assert not p.should_retry(1, Outcome.TIMEOUT, None, idempotent=True)


def test_a_4xx_status_may_be_chosen_for_retry() -> None:
    p = RetryPolicy(retry_statuses=frozenset({429}))
    assert p.should_retry(1, Outcome.SUCCESS, 429, idempotent=True)
    assert not p.should_retry(1, Outcome.SUCCESS, 200, idempotent=True)
    assert not p.should_retry(1, Outcome.SUCCESS, None, idempotent=True)


@pytest.mark.parametrize("outcome", [Outcome.RESET, Outcome.TIMEOUT, Outcome.FAILURE])
def test_non_idempotent_requests_are_not_retried_once_they_may_have_been_sent(
    outcome: Outcome,
) -> None:
    p = RetryPolicy(retry_on=frozenset({Outcome.RESET, Outcome.TIMEOUT, Outcome.FAILURE}))
    assert not p.should_retry(1, outcome, 503, idempotent=False)
    assert p.should_retry(1, outcome, 503, idempotent=True)


def test_connect_failure_is_retried_even_for_non_idempotent_requests() -> None:
    p = RetryPolicy()
    assert p.should_retry(1, Outcome.CONNECT_FAILURE, None, idempotent=False)
    assert not p.should_retry(3, Outcome.CONNECT_FAILURE, None, idempotent=False)
    only_resets = RetryPolicy(retry_on=frozenset({Outcome.RESET}))
    assert not only_resets.should_retry(1, Outcome.CONNECT_FAILURE, None, idempotent=False)


def test_retry_non_idempotent_opts_in() -> None:
    p = RetryPolicy(retry_non_idempotent=True)
    assert p.should_retry(1, Outcome.RESET, None, idempotent=False)
    assert p.should_retry(1, Outcome.FAILURE, 503, idempotent=False)


def test_success_is_never_retried_without_a_chosen_status() -> None:
    p = RetryPolicy(retry_non_idempotent=True)
    for status in (200, 201, 404, None):
        assert not p.should_retry(1, Outcome.SUCCESS, status, idempotent=True)


# --- backoff ---------------------------------------------------------------------------


def test_backoff_caps_double_until_max() -> None:
    p = RetryPolicy(base_backoff=0.025, max_backoff=0.25, max_attempts=10)

    class Top(random.Random):
        def random(self) -> float:
            return 0.999999999

    caps = [p.backoff(attempt, Top()) for attempt in range(1, 8)]
    assert caps == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.25, 0.25, 0.25], rel=1e-6)


def test_backoff_is_seeded() -> None:
    p = RetryPolicy()
    a = [p.backoff(n, random.Random(7)) for n in range(1, 5)]
    b = [p.backoff(n, random.Random(7)) for n in range(1, 5)]
    assert a == b


def test_backoff_spreads_over_the_whole_window() -> None:
    # Full jitter, not "equal jitter": draws near 0 and near the cap both occur.
    p = RetryPolicy(base_backoff=0.1, max_backoff=0.1)
    rng = random.Random(1)
    draws = [p.backoff(1, rng) for _ in range(2000)]
    assert min(draws) < 0.005
    assert max(draws) > 0.095
    assert 0.045 < sum(draws) / len(draws) < 0.055


@settings(deadline=None)
@given(
    base=st.floats(0.0, 5.0),
    extra=st.floats(0.0, 60.0),
    attempt=st.integers(1, 10_000),
    seed=st.integers(0, 2**32),
)
def test_full_jitter_backoff_is_within_zero_and_the_cap(
    base: float, extra: float, attempt: int, seed: int
) -> None:
    p = RetryPolicy(base_backoff=base, max_backoff=base + extra, max_attempts=attempt + 1)
    delay = p.backoff(attempt, random.Random(seed))
    cap = min(base + extra, base * 2 ** min(attempt - 1, 62))
    assert 0.0 <= delay <= cap


# --- budget ----------------------------------------------------------------------------


def test_budget_defaults_are_envoys() -> None:
    b = RetryBudget()
    assert (b.ratio, b.min_concurrent) == (0.2, 10)


def test_budget_allows_min_concurrent_when_quiet() -> None:
    b = RetryBudget(ratio=0.2, min_concurrent=3)
    b.request_started()
    assert [b.try_start_retry() for _ in range(4)] == [True, True, True, False]
    assert b.active_retries == 3
    b.retry_finished()
    assert b.try_start_retry()


def test_budget_grows_with_traffic() -> None:
    b = RetryBudget(ratio=0.2, min_concurrent=3)
    for _ in range(50):
        b.request_started()
    granted = 0
    while b.try_start_retry():
        granted += 1
    assert granted == 10
    assert b.active_requests == 50


def test_budget_ratio_is_exact_at_the_boundary() -> None:
    b = RetryBudget(ratio=0.29, min_concurrent=0)
    for _ in range(100):
        b.request_started()
    assert b.limit() == 29


def test_budget_of_zero_refuses_every_retry() -> None:
    b = RetryBudget(ratio=0.0, min_concurrent=0)
    b.request_started()
    assert not b.try_start_retry()


def test_unbalanced_finish_is_a_caller_bug() -> None:
    b = RetryBudget()
    with pytest.raises(RuntimeError, match="request_finished"):
        b.request_finished()
    with pytest.raises(RuntimeError, match="retry_finished"):
        b.retry_finished()


@settings(deadline=None)
@given(
    ratio=st.floats(0.0, 1.0),
    min_concurrent=st.integers(0, 5),
    ops=st.lists(st.sampled_from(["start", "finish", "retry", "retry_done"]), max_size=300),
)
def test_budget_never_admits_more_than_max_of_min_and_ratio_times_active(
    ratio: float, min_concurrent: int, ops: list[str]
) -> None:
    b = RetryBudget(ratio=ratio, min_concurrent=min_concurrent)
    requests = retries = 0
    for op in ops:
        if op == "start":
            b.request_started()
            requests += 1
        elif op == "finish" and requests:
            b.request_finished()
            requests -= 1
        elif op == "retry":
            if b.try_start_retry():
                retries += 1
                assert retries <= max(min_concurrent, ratio * requests + 1e-6)
        elif op == "retry_done" and retries:
            b.retry_finished()
            retries -= 1
        assert (b.active_requests, b.active_retries) == (requests, retries)
