"""`make_balancer` refuses every configuration it could only ignore, naming what is valid."""

from __future__ import annotations

import random
from typing import Any

import pytest

from shoal.balance import POLICIES, BalanceError, make_balancer, policy_options

from .helpers import pool


def make(policy: str, **kw: Any) -> object:
    return make_balancer(policy, random.Random(1), **kw)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_builds_and_picks(policy: str) -> None:
    b = make_balancer(policy, random.Random(1))
    assert b.pick(0.0) is None
    b.update(pool(3), 0.0)
    assert b.pick(0.0) is not None


def test_unknown_policy_names_the_valid_ones() -> None:
    with pytest.raises(BalanceError) as info:
        make("round-robin")
    assert info.value.field == "policy"
    for name in POLICIES:
        assert name in info.value.message


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(BalanceError) as info:
        make("least_request", choices=3)
    assert info.value.field == "option choices"
    assert "active_request_bias, choice_count" in info.value.message
    with pytest.raises(BalanceError, match="valid: none"):
        make("round_robin", table_size=65537)


@pytest.mark.parametrize(
    ("policy", "option", "value"),
    [
        ("least_request", "choice_count", 1),
        ("least_request", "choice_count", 2.0),
        ("least_request", "choice_count", True),
        ("least_request", "active_request_bias", -0.5),
        ("peak_ewma", "decay", 0),
        ("peak_ewma", "decay", float("inf")),
        ("peak_ewma", "default_rtt", -1.0),
        ("peak_ewma", "failure_multiplier", 0.5),
        ("peak_ewma", "decay", "10s"),
        ("ring_hash", "points_per_weight", 0),
        ("maglev", "table_size", 65536),
        ("maglev", "table_size", 5),
    ],
)
def test_option_out_of_range(policy: str, option: str, value: object) -> None:
    with pytest.raises(BalanceError) as info:
        make(policy, **{option: value})
    assert info.value.field == f"option {option}"
    assert repr(value) in info.value.message


def test_option_values_are_used() -> None:
    b = make_balancer("maglev", random.Random(1), table_size=7)
    b.update(pool(7), 0.0)
    with pytest.raises(BalanceError, match="at most 7"):
        b.update(pool(8), 0.0)
    assert len(b.hosts) == 7  # the refused pool changed nothing


@pytest.mark.parametrize("policy", ["round_robin", "random", "ring_hash", "maglev"])
def test_slow_start_refused_where_it_cannot_ramp(policy: str) -> None:
    with pytest.raises(BalanceError) as info:
        make(policy, slow_start=30.0)
    assert info.value.field == "slow_start"
    assert "weighted_round_robin, weighted_random, least_request, peak_ewma" in str(info.value)


def test_slow_start_and_zone_options_need_their_feature() -> None:
    with pytest.raises(BalanceError, match="only with slow_start > 0"):
        make("least_request", slow_start_aggression=2.0)
    with pytest.raises(BalanceError, match="only with local_zone"):
        make("least_request", zone_min_hosts=3)
    make("least_request", slow_start=10.0, slow_start_aggression=2.0)
    make("least_request", local_zone="a", zone_min_hosts=3, local_traffic_share=0.5)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"slow_start": -1.0}, "slow_start"),
        ({"slow_start": float("nan")}, "slow_start"),
        ({"local_zone": ""}, "local_zone"),
        ({"local_zone": 3}, "local_zone"),
        ({"slow_start": 5.0, "slow_start_min_weight": 0.0}, "option slow_start_min_weight"),
        ({"local_zone": "a", "local_traffic_share": 1.5}, "option local_traffic_share"),
    ],
)
def test_bad_features(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(BalanceError) as info:
        make("weighted_random", **kw)
    assert info.value.field == field


def test_rng_must_be_a_random_instance() -> None:
    with pytest.raises(TypeError, match=r"random\.Random"):
        make_balancer("random", 42)  # type: ignore[arg-type]


def test_policy_options() -> None:
    assert policy_options("maglev") == {"table_size", "zone_min_hosts", "local_traffic_share"}
    assert "slow_start_aggression" in policy_options("peak_ewma")
    assert "slow_start_aggression" not in policy_options("ring_hash")
    with pytest.raises(BalanceError):
        policy_options("nope")
