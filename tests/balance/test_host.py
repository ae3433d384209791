"""`Host` validates itself; a bad one never reaches a balancer."""

from __future__ import annotations

import dataclasses
import math

import pytest

from shoal.balance import BalanceError, Host


def test_defaults() -> None:
    host = Host(id="a")
    assert (host.weight, host.zone, host.since) == (1.0, "", 0.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": 7}, "id"),
        ({"id": "a", "weight": -1.0}, "weight"),
        ({"id": "a", "weight": math.nan}, "weight"),
        ({"id": "a", "weight": math.inf}, "weight"),
        ({"id": "a", "weight": True}, "weight"),
        ({"id": "a", "weight": "2"}, "weight"),
        ({"id": "a", "zone": None}, "zone"),
        ({"id": "a", "since": math.nan}, "since"),
        ({"id": "a", "since": "now"}, "since"),
    ],
)
def test_rejects(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(BalanceError) as info:
        Host(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_zero_weight_and_int_weight_are_fine() -> None:
    assert Host(id="a", weight=0).weight == 0
    assert Host(id="a", weight=3).weight == 3


def test_frozen_and_keyword_only() -> None:
    host = Host(id="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        host.weight = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Host("a")  # type: ignore[misc]
