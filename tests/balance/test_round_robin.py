"""Round robin: every host in turn, from a random start."""

from __future__ import annotations

from itertools import pairwise

from shoal.balance import Host

from .helpers import balancer, picks, pool


def test_cycles_in_pool_order() -> None:
    b = balancer("round_robin", pool(4))
    seq = picks(b, 12)
    start = int(seq[0][1:])
    assert seq == [f"h{(start + i) % 4}" for i in range(12)]


def test_start_offset_is_random() -> None:
    firsts = {picks(balancer("round_robin", pool(8), seed=s), 1)[0] for s in range(40)}
    assert len(firsts) >= 6  # not everyone starts at h0


def test_ignores_weights() -> None:
    hosts = [Host(id="a", weight=1.0), Host(id="b", weight=10.0)]
    seq = picks(balancer("round_robin", hosts), 10)
    assert seq.count("a") == seq.count("b") == 5


def test_steps_over_excluded_hosts() -> None:
    b = balancer("round_robin", pool(4))
    seq = picks(b, 9, exclude={"h1", "h2"})
    assert set(seq) == {"h0", "h3"}
    assert all(x != y for x, y in pairwise(seq))  # still alternates


def test_update_keeps_the_cursor() -> None:
    b = balancer("round_robin", pool(4))
    first = picks(b, 2)
    b.update(pool(4), 1.0)  # the same pool again: the cycle goes on
    after = picks(b, 2)
    reference = balancer("round_robin", pool(4))
    assert first + after == picks(reference, 4)
