"""Every config refuses bad values on construction, naming the field and the allowed range."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from shoal.resilience import (
    BreakerConfig,
    Bulkhead,
    KeyedRateLimiter,
    Outcome,
    OutlierConfig,
    RetryBudget,
    RetryPolicy,
    Timeouts,
    TokenBucket,
)

CASES: list[tuple[Callable[[], object], str]] = [
    (lambda: Timeouts(overall=0.0), r"Timeouts\.overall must be in \(0, inf\), got 0\.0"),
    (lambda: Timeouts(overall=float("nan")), r"Timeouts\.overall must be in \(0, inf\)"),
    (lambda: Timeouts(per_attempt=-1.0), r"Timeouts\.per_attempt must be in \(0, inf\)"),
    (
        lambda: Timeouts(overall=1.0, per_attempt=2.0),
        r"Timeouts\.per_attempt must be <= overall \(1\.0\), got 2\.0",
    ),
    (lambda: RetryPolicy(max_attempts=0), r"RetryPolicy\.max_attempts must be in \[1, inf\)"),
    (lambda: RetryPolicy(max_attempts=True), r"RetryPolicy\.max_attempts must be an integer"),
    (lambda: RetryPolicy(base_backoff=-0.1), r"RetryPolicy\.base_backoff must be in \[0, inf\)"),
    (
        lambda: RetryPolicy(base_backoff=0.5, max_backoff=0.25),
        r"RetryPolicy\.max_backoff must be in \[0\.5, inf\), got 0\.25",
    ),
    (
        lambda: RetryPolicy(retry_on=frozenset({Outcome.SUCCESS})),
        r"RetryPolicy\.retry_on must not contain Outcome\.SUCCESS",
    ),
    (
        lambda: RetryPolicy(retry_on={Outcome.RESET}),  # type: ignore[arg-type]
        r"RetryPolicy\.retry_on must be a frozenset of Outcome",
    ),
    (
        lambda: RetryPolicy(retry_statuses=frozenset({200})),
        r"RetryPolicy\.retry_statuses item must be in \[400, 599\], got 200",
    ),
    (lambda: RetryBudget(ratio=1.5), r"RetryBudget\.ratio must be in \[0, 1\], got 1\.5"),
    (lambda: RetryBudget(min_concurrent=-1), r"RetryBudget\.min_concurrent must be in \[0, inf\)"),
    (lambda: BreakerConfig(window=0), r"BreakerConfig\.window must be in \[1, inf\)"),
    (
        lambda: BreakerConfig(window=20, minimum_calls=21),
        r"BreakerConfig\.minimum_calls must be in \[1, 20\], got 21",
    ),
    (lambda: BreakerConfig(failure_rate=0.0), r"BreakerConfig\.failure_rate must be in \(0, 1\]"),
    (lambda: BreakerConfig(failure_rate=50), r"BreakerConfig\.failure_rate must be in \(0, 1\]"),
    (
        lambda: BreakerConfig(slow_call_rate=1.01),
        r"BreakerConfig\.slow_call_rate must be in \(0, 1\]",
    ),
    (
        lambda: BreakerConfig(slow_call_duration=0.0),
        r"BreakerConfig\.slow_call_duration must be in \(0, inf\)",
    ),
    (
        lambda: BreakerConfig(open_duration=float("inf")),
        r"BreakerConfig\.open_duration must be in \(0, inf\)",
    ),
    (lambda: BreakerConfig(half_open_calls=0), r"BreakerConfig\.half_open_calls must be in"),
    (
        lambda: BreakerConfig(half_open_max_wait=-1.0),
        r"BreakerConfig\.half_open_max_wait must be in \(0, inf\)",
    ),
    (
        lambda: BreakerConfig(failure_outcomes=frozenset()),
        r"BreakerConfig\.failure_outcomes must be a non-empty frozenset",
    ),
    (
        lambda: OutlierConfig(consecutive_failures=-1),
        r"OutlierConfig\.consecutive_failures must be in \[0, inf\)",
    ),
    (
        lambda: OutlierConfig(consecutive_local_failures=2.5),  # type: ignore[arg-type]
        r"OutlierConfig\.consecutive_local_failures must be an integer",
    ),
    (lambda: OutlierConfig(interval=0), r"OutlierConfig\.interval must be in \(0, inf\)"),
    (
        lambda: OutlierConfig(base_ejection=-5.0),
        r"OutlierConfig\.base_ejection must be in \(0, inf\)",
    ),
    (
        lambda: OutlierConfig(base_ejection=30.0, max_ejection=10.0),
        r"OutlierConfig\.max_ejection must be in \[30, inf\), got 10\.0",
    ),
    (
        lambda: OutlierConfig(max_ejection_percent=101),
        r"OutlierConfig\.max_ejection_percent must be in \[0, 100\], got 101",
    ),
    (lambda: Bulkhead(0), r"Bulkhead\.max_concurrent must be in \[1, inf\), got 0"),
    (lambda: TokenBucket(rate=0.0, burst=1.0), r"TokenBucket\.rate must be in \(0, inf\)"),
    (lambda: TokenBucket(rate=1.0, burst=-1.0), r"TokenBucket\.burst must be in \(0, inf\)"),
    (
        lambda: KeyedRateLimiter(rate=1.0, burst=1.0, max_keys=0),
        r"KeyedRateLimiter\.max_keys must be in \[1, inf\)",
    ),
    (
        lambda: KeyedRateLimiter(rate="fast", burst=1.0),  # type: ignore[arg-type]
        r"KeyedRateLimiter\.rate must be a number, got 'fast'",
    ),
]


@pytest.mark.parametrize(("make", "message"), CASES)
def test_bad_config_is_refused_with_the_field_and_range(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_defaults_construct() -> None:
    for make in (Timeouts, RetryPolicy, RetryBudget, BreakerConfig, OutlierConfig, Bulkhead):
        make()


def test_configs_are_frozen_and_slotted() -> None:
    for config in (Timeouts(), RetryPolicy(), BreakerConfig(), OutlierConfig()):
        assert not hasattr(config, "__dict__")
        name = dataclasses.fields(config)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, name, 3)
