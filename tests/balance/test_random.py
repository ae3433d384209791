"""Random and weighted random: the right distribution, also under exclusion."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.balance import Host

from .helpers import PROPERTY, balancer, picks, pool


def assert_shares(counts: Counter[str], expected: dict[str, float], draws: int) -> None:
    """Each count within 5 standard deviations of its binomial mean (plus one)."""
    for host_id, p in expected.items():
        mean = draws * p
        sigma = math.sqrt(draws * p * (1 - p))
        assert abs(counts[host_id] - mean) <= 5 * sigma + 1, (host_id, counts[host_id], mean)


def test_uniform() -> None:
    draws = 20_000
    counts = Counter(picks(balancer("random", pool(5)), draws))
    assert_shares(counts, {f"h{i}": 0.2 for i in range(5)}, draws)


@PROPERTY
@given(
    weights=st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_weighted_random_is_fair(weights: list[float], seed: int) -> None:
    hosts = [Host(id=f"h{i}", weight=w) for i, w in enumerate(weights)]
    draws = 4000
    counts = Counter(picks(balancer("weighted_random", hosts, seed=seed), draws))
    total = sum(weights)
    assert_shares(counts, {h.id: h.weight / total for h in hosts}, draws)


@pytest.mark.parametrize("excluded", [{"h0"}, {"h0", "h1", "h2"}, {"h0", "h1", "h2", "h3"}])
def test_weighted_exclusion_is_the_conditional_distribution(excluded: set[str]) -> None:
    """Rejection sampling and the exact fallback both draw by weight among the rest."""
    hosts = [Host(id=f"h{i}", weight=float(i + 1)) for i in range(5)]
    draws = 10_000
    counts = Counter(picks(balancer("weighted_random", hosts), draws, exclude=excluded))
    rest = [h for h in hosts if h.id not in excluded]
    total = sum(h.weight for h in rest)
    assert set(counts) == {h.id for h in rest}
    assert_shares(counts, {h.id: h.weight / total for h in rest}, draws)


def test_uniform_exclusion_when_most_are_excluded() -> None:
    draws = 5000
    counts = Counter(
        picks(balancer("random", pool(10)), draws, exclude={f"h{i}" for i in range(8)})
    )
    assert_shares(counts, {"h8": 0.5, "h9": 0.5}, draws)
