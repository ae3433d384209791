"""Zone-aware preference: local while the zone can carry it, proportional spill otherwise."""

from __future__ import annotations

from collections import Counter

import pytest

from shoal.balance import POLICIES, Host
from shoal.balance.zone import ZonePreference

from .helpers import balancer, picks


def zones(counts: dict[str, int], weight: float = 1.0) -> list[Host]:
    return [
        Host(id=f"{zone}{i}", zone=zone, weight=weight)
        for zone, n in counts.items()
        for i in range(n)
    ]


def zone_of(host_id: str) -> str:
    return host_id[0]


@pytest.mark.parametrize("policy", POLICIES)
def test_all_local_when_the_zone_holds_its_share(policy: str) -> None:
    b = balancer(policy, zones({"a": 3, "b": 3, "c": 3}), local_zone="a")
    keys = [f"k{i}" for i in range(300)]
    got = {zone_of(b.pick(0.0, key=k).id) for k in keys}  # type: ignore[union-attr]
    assert got == {"a"}


@pytest.mark.parametrize("policy", ["random", "weighted_random", "least_request", "ring_hash"])
def test_spills_in_proportion_when_the_zone_is_short(policy: str) -> None:
    """Envoy's example: 3 zones of 3 hosts, 2 local hosts down. The local host takes
    3/7 of the local callers' traffic, so its load matches every other host's."""
    b = balancer(policy, zones({"a": 1, "b": 3, "c": 3}), local_zone="a")
    draws = 7000
    counts = Counter(zone_of(h) for h in picks_or_keys(b, policy, draws))
    assert counts["a"] / draws == pytest.approx(3 / 7, abs=0.03)
    assert counts["b"] == pytest.approx(counts["c"], rel=0.15)


def picks_or_keys(b: object, policy: str, draws: int) -> list[str]:
    if policy == "ring_hash":  # keyed: the side is chosen by the key's own hash
        return [b.pick(0.0, key=f"key-{i}").id for i in range(draws)]  # type: ignore[attr-defined]
    return picks(b, draws)  # type: ignore[arg-type]


def test_a_key_stays_on_its_side() -> None:
    b = balancer("maglev", zones({"a": 1, "b": 3, "c": 3}), local_zone="a")
    first = {f"k{i}": b.pick(0.0, key=f"k{i}") for i in range(200)}
    assert all(b.pick(0.0, key=k) == h for k, h in first.items())


@pytest.mark.parametrize("policy", POLICIES)
def test_falls_back_when_the_local_zone_is_empty_or_excluded(policy: str) -> None:
    b = balancer(policy, zones({"b": 3, "c": 3}), local_zone="a")
    assert {zone_of(h) for h in picks(b, 100)} == {"b", "c"}
    b.update(zones({"a": 2, "b": 3, "c": 3}), 1.0)
    assert {zone_of(h) for h in picks(b, 100, exclude={"a0", "a1"})} == {"b", "c"}
    assert set(picks(b, 50, exclude={"b0", "b1", "b2", "c0", "c1", "c2"})) <= {"a0", "a1"}


def test_small_pools_are_balanced_as_a_whole() -> None:
    """Below zone_min_hosts (Envoy's min_cluster_size, 6) there is no preference."""
    b = balancer("random", zones({"a": 1, "b": 2}), local_zone="a")
    counts = Counter(zone_of(h) for h in picks(b, 6000))
    assert counts["a"] / 6000 == pytest.approx(1 / 3, abs=0.03)
    strict = balancer("random", zones({"a": 1, "b": 1}), local_zone="a", zone_min_hosts=1)
    assert Counter(zone_of(h) for h in picks(strict, 100)) == {"a": 100}  # 1/2 >= 1/2


def test_capacity_is_weight_for_weighted_policies() -> None:
    hosts = [Host(id="a0", zone="a", weight=1.0)] + [
        Host(id=f"b{i}", zone="b", weight=3.0) for i in range(5)
    ]
    b = balancer("weighted_random", hosts, local_zone="a", local_traffic_share=0.5)
    counts = Counter(zone_of(h) for h in picks(b, 8000))
    assert counts["a"] / 8000 == pytest.approx((1 / 16) / 0.5, abs=0.02)


def test_local_traffic_share_option() -> None:
    b = balancer("random", zones({"a": 2, "b": 6}), local_zone="a", local_traffic_share=0.5)
    counts = Counter(zone_of(h) for h in picks(b, 8000))
    assert counts["a"] / 8000 == pytest.approx(0.25 / 0.5, abs=0.03)


@pytest.mark.parametrize(
    ("local", "total", "hosts", "zones_", "share", "expected"),
    [
        (3, 9, 9, 3, None, 1.0),
        (1, 7, 7, 3, None, 3 / 7),
        (0, 7, 7, 3, None, 0.0),
        (7, 7, 7, 1, None, 1.0),
        (1, 3, 3, 2, None, 1 / 3),  # fewer hosts than min_hosts: proportional
        (2, 8, 8, 2, 0.5, 0.5),
        (2, 8, 8, 2, 0.2, 1.0),
    ],
)
def test_local_probability(
    local: float, total: float, hosts: int, zones_: int, share: float | None, expected: float
) -> None:
    rule = ZonePreference(local_zone="a", local_traffic_share=share)
    assert rule.local_probability(local, total, hosts, zones_) == pytest.approx(expected)


def test_zone_change_keeps_host_state() -> None:
    b = balancer("least_request", zones({"a": 3, "b": 3}), local_zone="a")
    b.started("a0", 0.0)
    b.update([Host(id="a0", zone="b"), *zones({"b": 3})], 1.0)
    assert b.load("a0", 1.0).outstanding == 1  # type: ignore[union-attr]
