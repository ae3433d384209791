"""Bulkhead: a cap on calls in flight."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.resilience import Bulkhead


def test_default_is_resilience4js() -> None:
    assert Bulkhead().max_concurrent == 25


def test_refuses_past_the_cap_and_frees_on_release() -> None:
    b = Bulkhead(2)
    assert [b.try_acquire() for _ in range(3)] == [True, True, False]
    assert (b.in_use, b.available, b.rejected) == (2, 0, 1)
    b.release()
    assert b.try_acquire()


def test_release_without_acquire_is_a_caller_bug() -> None:
    with pytest.raises(RuntimeError, match="release"):
        Bulkhead(1).release()


@settings(deadline=None)
@given(cap=st.integers(1, 5), ops=st.lists(st.booleans(), max_size=200))
def test_in_use_stays_within_bounds(cap: int, ops: list[bool]) -> None:
    b = Bulkhead(cap)
    held = 0
    for acquire in ops:
        if acquire:
            if b.try_acquire():
                held += 1
        elif held:
            b.release()
            held -= 1
        assert 0 <= b.in_use == held <= cap
