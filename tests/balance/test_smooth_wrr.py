"""Smooth weighted round robin: nginx's sequence and its exact fairness."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shoal.balance import Host

from .helpers import PROPERTY, balancer, picks


def test_nginx_example_sequence() -> None:
    # The example in nginx's commit introducing smooth WRR: weights 5, 1, 1.
    hosts = [Host(id="a", weight=5), Host(id="b", weight=1), Host(id="c", weight=1)]
    b = balancer("weighted_round_robin", hosts)
    assert "".join(picks(b, 14)) == "aabacaa" * 2


@PROPERTY
@given(weights=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6))
def test_every_window_of_total_weight_is_exact(weights: list[int]) -> None:
    """Over any sum(weights) consecutive picks each host appears exactly weight times."""
    hosts = [Host(id=f"h{i}", weight=w) for i, w in enumerate(weights)]
    total = sum(weights)
    seq = picks(balancer("weighted_round_robin", hosts), 3 * total)
    for start in range(len(seq) - total + 1):
        window = seq[start : start + total]
        assert [window.count(h.id) for h in hosts] == weights, (start, window)


@PROPERTY
@given(weights=st.lists(st.integers(min_value=1, max_value=9), min_size=2, max_size=6))
def test_spreads_a_heavy_host_out(weights: list[int]) -> None:
    """No host gets more than ceil(w / others) turns in a row (no bunching)."""
    hosts = [Host(id=f"h{i}", weight=w) for i, w in enumerate(weights)]
    total = sum(weights)
    seq = picks(balancer("weighted_round_robin", hosts), 2 * total)
    for host, w in zip(hosts, weights, strict=True):
        others = total - w
        longest = max(
            len(run) for run in "".join("x" if s == host.id else " " for s in seq).split()
        )
        assert longest <= -(-w // others) + 1


def test_excluded_host_does_not_bank_turns() -> None:
    hosts = [Host(id="a", weight=1), Host(id="b", weight=1)]
    b = balancer("weighted_round_robin", hosts)
    picks(b, 10, exclude={"a"})
    # Had "a" accumulated while excluded it would now win many times in a row.
    assert picks(b, 4) in (["a", "b", "a", "b"], ["b", "a", "b", "a"])


def test_update_keeps_current_weights() -> None:
    hosts = [Host(id="a", weight=3), Host(id="b", weight=2)]
    b = balancer("weighted_round_robin", hosts)
    first = picks(b, 3)
    b.update(hosts, 1.0)
    reference = balancer("weighted_round_robin", hosts)
    assert first + picks(b, 7) == picks(reference, 10)


def test_fractional_weights() -> None:
    hosts = [Host(id="a", weight=0.5), Host(id="b", weight=1.5)]
    seq = picks(balancer("weighted_round_robin", hosts), 400)
    assert seq.count("a") == 100
