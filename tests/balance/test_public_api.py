"""The public surface of shoal.balance is pinned: the SDK and the gateway build on it."""

from __future__ import annotations

import inspect

import shoal.balance
from shoal.balance import Balancer, make_balancer

EXPECTED = {
    "POLICIES", "BalanceError", "Balancer", "Host", "HostLoad", "make_balancer",
    "policy_options",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(shoal.balance.__all__) == EXPECTED
    assert len(shoal.balance.__all__) == len(EXPECTED)


def test_every_name_exists() -> None:
    for name in shoal.balance.__all__:
        assert hasattr(shoal.balance, name), name


def test_policies_are_the_contract() -> None:
    assert shoal.balance.POLICIES == (
        "round_robin", "weighted_round_robin", "random", "weighted_random",
        "least_request", "peak_ewma", "ring_hash", "maglev",
    )  # fmt: skip


def test_balancer_protocol_methods() -> None:
    members = {name for name in vars(Balancer) if not name.startswith("_")}
    assert members == {"update", "pick", "started", "finished", "hosts", "load"}
    pick = inspect.signature(Balancer.pick)
    assert [p.name for p in pick.parameters.values()] == ["self", "now", "key", "exclude"]
    assert pick.parameters["key"].kind is inspect.Parameter.KEYWORD_ONLY
    assert pick.parameters["exclude"].kind is inspect.Parameter.KEYWORD_ONLY


def test_make_balancer_signature() -> None:
    params = inspect.signature(make_balancer).parameters
    assert list(params) == ["policy", "rng", "local_zone", "slow_start", "options"]
    assert params["local_zone"].default is None
    assert params["slow_start"].default == 0.0
