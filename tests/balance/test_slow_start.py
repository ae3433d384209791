"""Slow start: Envoy's ramp, applied by the pool as time passes."""

from __future__ import annotations

from collections import Counter

import pytest

from shoal.balance import Host
from shoal.balance.slow_start import RAMP_STEPS, SlowStart

from .helpers import balancer, picks, pool


def test_factor_is_envoys_formula() -> None:
    ramp = SlowStart(window=60.0)
    assert ramp.factor(0.0) == 0.1  # min_weight, Envoy's 10%
    assert ramp.factor(-5.0) == 0.1  # a `since` in the future counts as brand new
    assert ramp.factor(3.0) == 0.1  # 3/60 = 5% is below the floor
    assert ramp.factor(30.0) == pytest.approx(0.5)  # aggression 1: linear
    assert ramp.factor(60.0) == 1.0
    fast = SlowStart(window=60.0, aggression=2.0)
    assert fast.factor(15.0) == pytest.approx(0.5)  # (1/4) ** (1/2)
    assert SlowStart(window=10.0, min_weight=0.5).factor(1.0) == 0.5


def with_newcomer(policy: str, now: float, **kw: object) -> object:
    hosts = [*pool(3), Host(id="new", since=100.0)]
    return balancer(policy, hosts, now=now, slow_start=60.0, **kw)


@pytest.mark.parametrize("policy", ["weighted_round_robin", "weighted_random", "least_request"])
def test_a_new_host_ramps_up(policy: str) -> None:
    shares = []
    for now in (100.0, 130.0, 170.0):
        b = with_newcomer(policy, now)
        seq = picks(b, 12_000, now=now)  # type: ignore[arg-type]
        shares.append(seq.count("new") / len(seq))
    # weight 0.1, 0.5, 1.0 against three hosts of weight 1 (5 sigma is about 0.02)
    assert shares == pytest.approx([0.1 / 3.1, 0.5 / 3.5, 0.25], abs=0.02)


def test_peak_ewma_ramps_the_odds_of_being_a_candidate() -> None:
    young = with_newcomer("peak_ewma", 100.0)
    seq = picks(young, 4000, now=100.0)  # type: ignore[arg-type]
    grown = with_newcomer("peak_ewma", 200.0)
    later = picks(grown, 4000, now=200.0)  # type: ignore[arg-type]
    assert seq.count("new") < 0.5 * later.count("new")


def test_the_pool_reweighs_as_time_passes_without_an_update() -> None:
    b = with_newcomer("weighted_round_robin", 100.0)
    early = Counter(picks(b, 310, now=100.0))  # type: ignore[arg-type]
    late = Counter(picks(b, 400, now=200.0))  # type: ignore[arg-type]
    assert early["new"] == 10  # weight 0.1 of 3.1: exactly 10 in 310 smooth-WRR picks
    assert late["new"] == 100  # the ramp ended: full weight


def test_reweigh_steps_are_bounded() -> None:
    b = with_newcomer("weighted_random", 100.0)
    loads = []
    for i in range(200):
        now = 100.0 + i * 0.1
        b.pick(now)  # type: ignore[attr-defined]
        loads.append(b.load("new", now).weight)  # type: ignore[attr-defined]
    assert 1 < len(set(loads)) <= 20 / (60.0 / RAMP_STEPS) + 1  # steps of 1.5 s over 20 s


def test_hosts_present_from_the_start_do_not_ramp() -> None:
    b = balancer("weighted_random", pool(3), now=500.0, slow_start=60.0)
    assert all(b.load(h.id, 500.0).weight == 1.0 for h in pool(3))  # type: ignore[union-attr]


def test_ramp_uses_the_configured_weight() -> None:
    hosts = [Host(id="a", weight=4.0, since=0.0)]
    b = balancer("least_request", hosts, now=30.0, slow_start=60.0)
    assert b.load("a", 30.0).weight == pytest.approx(2.0)  # type: ignore[union-attr]


def test_slow_start_options() -> None:
    b = balancer(
        "weighted_random",
        [Host(id="a", since=0.0)],
        now=15.0,
        slow_start=60.0,
        slow_start_aggression=2.0,
        slow_start_min_weight=0.05,
    )
    assert b.load("a", 15.0).weight == pytest.approx(0.5)  # type: ignore[union-attr]
