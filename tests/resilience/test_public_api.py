"""The public surface of shoal.resilience is pinned: the SDK and gateway code against it."""

from __future__ import annotations

import shoal.resilience

EXPECTED = {
    "DEFAULT_RETRY_ON", "DEFAULT_RETRY_STATUSES", "FAILURE_OUTCOMES", "BreakerConfig",
    "BreakerState", "BreakerTransition", "Bulkhead", "CircuitBreaker", "KeyedRateLimiter",
    "Outcome", "OutlierConfig", "OutlierDetector", "RetryBudget", "RetryPolicy", "Timeouts",
    "TokenBucket", "classify_status",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(shoal.resilience.__all__) == EXPECTED
    assert len(shoal.resilience.__all__) == len(EXPECTED)


def test_every_name_exists() -> None:
    for name in shoal.resilience.__all__:
        assert hasattr(shoal.resilience, name), name


def test_outcome_members_are_the_contract() -> None:
    assert [o.name for o in shoal.resilience.Outcome] == [
        "SUCCESS", "FAILURE", "TIMEOUT", "CONNECT_FAILURE", "RESET",
    ]  # fmt: skip
    assert [s.name for s in shoal.resilience.BreakerState] == ["CLOSED", "OPEN", "HALF_OPEN"]
