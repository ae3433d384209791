"""classify_status and Timeouts: the small pieces every attempt starts with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.resilience import Outcome, Timeouts, classify_status


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (100, Outcome.SUCCESS),
        (200, Outcome.SUCCESS),
        (304, Outcome.SUCCESS),
        (404, Outcome.SUCCESS),
        (429, Outcome.SUCCESS),
        (499, Outcome.SUCCESS),
        (500, Outcome.FAILURE),
        (503, Outcome.FAILURE),
        (599, Outcome.FAILURE),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


@pytest.mark.parametrize("status", [0, 99, 600, -1])
def test_classify_status_refuses_what_is_not_http(status: int) -> None:
    with pytest.raises(ValueError, match=r"\[100, 599\]"):
        classify_status(status)


def test_attempt_timeout_is_per_attempt_while_the_deadline_is_far() -> None:
    t = Timeouts(overall=10.0, per_attempt=2.0)
    assert t.attempt_timeout(started=100.0, now=100.0) == 2.0
    assert t.attempt_timeout(started=100.0, now=107.0) == 2.0


def test_attempt_timeout_shrinks_to_the_deadline_remainder() -> None:
    t = Timeouts(overall=10.0, per_attempt=2.0)
    assert t.attempt_timeout(started=100.0, now=109.5) == pytest.approx(0.5)
    assert t.attempt_timeout(started=100.0, now=110.0) == 0.0
    remaining = t.attempt_timeout(started=100.0, now=111.0)
    assert remaining is not None and remaining < 0


def test_attempt_timeout_without_per_attempt_is_the_remainder() -> None:
    t = Timeouts(overall=15.0)
    assert t.attempt_timeout(started=0.0, now=5.0) == 10.0
    assert t.deadline(3.0) == 18.0
    assert t.remaining(3.0, 4.0) == 14.0


def test_no_overall_means_per_attempt_or_no_limit() -> None:
    assert Timeouts(overall=None, per_attempt=1.5).attempt_timeout(0.0, 1e9) == 1.5
    unlimited = Timeouts(overall=None)
    assert unlimited.attempt_timeout(0.0, 1e9) is None
    assert unlimited.deadline(0.0) is None
    assert unlimited.remaining(0.0, 5.0) is None


def test_defaults_follow_envoy() -> None:
    t = Timeouts()
    assert t.overall == 15.0
    assert t.per_attempt is None


@settings(deadline=None)
@given(
    overall=st.floats(0.001, 100.0),
    per_attempt=st.one_of(st.none(), st.floats(0.001, 100.0)),
    elapsed=st.floats(0.0, 200.0),
)
def test_attempt_timeout_never_outlives_the_call(
    overall: float, per_attempt: float | None, elapsed: float
) -> None:
    if per_attempt is not None and per_attempt > overall:
        per_attempt = overall
    t = Timeouts(overall=overall, per_attempt=per_attempt)
    got = t.attempt_timeout(started=0.0, now=elapsed)
    assert got is not None
    assert got <= overall - elapsed + 1e-9
    if per_attempt is not None:
        assert got <= per_attempt
