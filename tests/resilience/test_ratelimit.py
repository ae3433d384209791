"""TokenBucket and KeyedRateLimiter."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.resilience import KeyedRateLimiter, TokenBucket


def test_starts_full_and_refills_at_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3.0)
    assert [b.try_take(10.0) for _ in range(4)] == [True, True, True, False]
    assert not b.try_take(10.4)  # 0.8 tokens
    assert b.try_take(10.5)  # 1.0 token
    assert b.tokens(100.0) == 3.0  # never above burst


def test_retry_after_says_when_tokens_will_be_there() -> None:
    b = TokenBucket(rate=4.0, burst=2.0)
    assert b.retry_after(0.0) == 0.0
    assert b.try_take(0.0, 2)
    assert b.retry_after(0.0) == pytest.approx(0.25)
    assert b.retry_after(0.0, 2) == pytest.approx(0.5)
    assert b.retry_after(0.1) == pytest.approx(0.15)
    assert b.retry_after(0.0, 3) == math.inf  # more than the bucket holds


def test_a_failed_take_takes_nothing() -> None:
    b = TokenBucket(rate=1.0, burst=5.0)
    assert not b.try_take(0.0, 6)
    assert b.try_take(0.0, 5)


def test_time_going_backwards_adds_no_tokens() -> None:
    b = TokenBucket(rate=1.0, burst=1.0)
    assert b.try_take(10.0)
    assert not b.try_take(5.0)
    assert not b.try_take(10.5)
    assert b.try_take(11.0)


def test_n_must_be_positive() -> None:
    b = TokenBucket(rate=1.0, burst=1.0)
    with pytest.raises(ValueError, match="n must be > 0"):
        b.try_take(0.0, 0)
    with pytest.raises(ValueError, match="n must be > 0"):
        b.retry_after(0.0, -1)


@settings(deadline=None)
@given(
    rate=st.floats(0.1, 1000.0),
    burst=st.floats(1.0, 100.0),
    takes=st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.1, 5.0)), max_size=200),
)
def test_never_grants_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: float, takes: list[tuple[float, float]]
) -> None:
    b = TokenBucket(rate=rate, burst=burst)
    now = 0.0
    granted: list[tuple[float, float]] = []
    for advance, n in takes:
        now += advance
        if b.try_take(now, n):
            granted.append((now, n))
    # Over every interval [t_i, t_j] of grant times, not only from the start.
    for i in range(len(granted)):
        total = 0.0
        for j in range(i, len(granted)):
            total += granted[j][1]
            elapsed = granted[j][0] - granted[i][0]
            assert total <= burst + rate * elapsed + 1e-6 * (1 + total)


# --- keyed -----------------------------------------------------------------------------


def test_keys_have_their_own_buckets() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=2.0)
    assert [limiter.try_take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.try_take("b", 0.0)
    assert limiter.retry_after("a", 0.0) == pytest.approx(1.0)
    assert limiter.retry_after("b", 0.0) == 0.0
    assert limiter.retry_after("never-seen", 0.0) == 0.0
    assert len(limiter) == 2  # asking about a key does not store it


def test_least_recently_used_key_is_evicted_at_the_cap() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1.0, max_keys=2)
    assert limiter.try_take("a", 0.0)
    assert limiter.try_take("b", 0.0)
    assert not limiter.try_take("a", 0.1)  # "a" is now the most recently used
    assert limiter.try_take("c", 0.2)  # evicts "b"
    assert len(limiter) == 2
    assert limiter.evicted == 1
    assert not limiter.try_take("a", 0.3)  # "a" kept its empty bucket
    assert limiter.try_take("b", 0.3)  # "b" starts afresh


@settings(deadline=None)
@given(
    max_keys=st.integers(1, 50),
    ops=st.lists(st.tuples(st.integers(0, 500), st.floats(0.0, 1.0)), max_size=500),
)
def test_keyed_limiter_memory_is_bounded(max_keys: int, ops: list[tuple[int, float]]) -> None:
    limiter = KeyedRateLimiter(rate=5.0, burst=2.0, max_keys=max_keys)
    now = 0.0
    for key, advance in ops:
        now += advance
        limiter.try_take(f"client-{key}", now)
        limiter.retry_after(f"other-{key}", now)
        assert len(limiter) <= max_keys
