"""`make_balancer`: a balancer by policy name, with every option checked up front.

Theory of operation: a table says, for each policy, which options it takes, their type,
default and allowed range; two more tables hold the options that only make sense with
slow start (`slow_start > 0`) or zone preference (`local_zone`). `make_balancer` checks
the name, every option against those tables (naming the valid ones when it refuses),
then wires a `Pool` with a picker factory for the policy. A configuration that could
only be silently ignored (slow start on a policy that does not ramp, a zone option
without a zone) is refused instead: the gateway's config loader turns a `BalanceError`
into a 4xx that says what to change.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BalanceError
from .host import Balancer
from .least_request import LeastRequestPicker
from .maglev import DEFAULT_TABLE_SIZE, MaglevPicker, is_prime
from .peak_ewma import (
    DEFAULT_DECAY,
    DEFAULT_FAILURE_MULTIPLIER,
    DEFAULT_RTT,
    LatencyModel,
    PeakEwmaConfig,
    PeakEwmaPicker,
)
from .picker import Picker
from .pool import Pool
from .random_pick import UniformPicker, WeightedPicker
from .ring_hash import DEFAULT_POINTS_PER_WEIGHT, RingHashPicker
from .round_robin import RoundRobinPicker
from .slow_start import DEFAULT_AGGRESSION, DEFAULT_MIN_WEIGHT, SlowStart
from .smooth_wrr import SmoothWeightedPicker
from .zone import DEFAULT_ZONE_MIN_HOSTS, ZonePreference

POLICIES = (
    "round_robin",
    "weighted_round_robin",
    "random",
    "weighted_random",
    "least_request",
    "peak_ewma",
    "ring_hash",
    "maglev",
)
# Policies whose weights ramp under slow start, and the consistent-hash ones.
RAMPING = frozenset({"weighted_round_robin", "weighted_random", "least_request", "peak_ewma"})
HASHED = frozenset({"ring_hash", "maglev"})

MAX_TABLE_SIZE = 10_000_019  # a prime; a bigger Maglev table costs seconds to build


@dataclass(frozen=True, slots=True)
class _Option:
    kind: type  # int or float
    default: Any
    valid: Callable[[Any], bool]
    rule: str  # what `valid` accepts, for the error message


def _number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int)
    return isinstance(value, int | float) and math.isfinite(value)


_POLICY_OPTIONS: dict[str, dict[str, _Option]] = {
    "round_robin": {},
    "weighted_round_robin": {},
    "random": {},
    "weighted_random": {},
    "least_request": {
        "choice_count": _Option(int, 2, lambda v: v >= 2, "an integer >= 2"),
        "active_request_bias": _Option(float, 1.0, lambda v: v >= 0, "a number >= 0"),
    },
    "peak_ewma": {
        "decay": _Option(float, DEFAULT_DECAY, lambda v: v > 0, "seconds > 0"),
        "default_rtt": _Option(float, DEFAULT_RTT, lambda v: v > 0, "seconds > 0"),
        "failure_multiplier": _Option(
            float, DEFAULT_FAILURE_MULTIPLIER, lambda v: v >= 1, "a number >= 1"
        ),
    },
    "ring_hash": {
        "points_per_weight": _Option(
            int, DEFAULT_POINTS_PER_WEIGHT, lambda v: 1 <= v <= 65536, "an integer in [1, 65536]"
        ),
    },
    "maglev": {
        "table_size": _Option(
            int,
            DEFAULT_TABLE_SIZE,
            lambda v: 7 <= v <= MAX_TABLE_SIZE and is_prime(v),
            f"a prime in [7, {MAX_TABLE_SIZE}]",
        ),
    },
}
_SLOW_START_OPTIONS: dict[str, _Option] = {
    "slow_start_aggression": _Option(float, DEFAULT_AGGRESSION, lambda v: v > 0, "a number > 0"),
    "slow_start_min_weight": _Option(
        float, DEFAULT_MIN_WEIGHT, lambda v: 0 < v <= 1, "a number in (0, 1]"
    ),
}
_ZONE_OPTIONS: dict[str, _Option] = {
    "zone_min_hosts": _Option(int, DEFAULT_ZONE_MIN_HOSTS, lambda v: v >= 1, "an integer >= 1"),
    "local_traffic_share": _Option(float, None, lambda v: 0 < v <= 1, "a number in (0, 1]"),
}


def policy_options(policy: str) -> frozenset[str]:
    """Every option name `make_balancer` accepts for `policy` (with slow start and zone)."""
    _check_policy(policy)
    names = set(_POLICY_OPTIONS[policy]) | set(_ZONE_OPTIONS)
    if policy in RAMPING:
        names |= set(_SLOW_START_OPTIONS)
    return frozenset(names)


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise BalanceError(
            "policy", f"unknown load-balancing policy {policy!r}; valid: {', '.join(POLICIES)}"
        )


def _resolve(options: Mapping[str, Any], table: Mapping[str, _Option]) -> dict[str, Any]:
    values = {}
    for name, option in table.items():
        value = options.get(name, option.default)
        if name in options and not (_number(value, option.kind) and option.valid(value)):
            raise BalanceError(f"option {name}", f"must be {option.rule}, got {value!r}")
        values[name] = float(value) if option.kind is float and value is not None else value
    return values


def make_balancer(
    policy: str,
    rng: random.Random,
    *,
    local_zone: str | None = None,
    slow_start: float = 0.0,
    **options: Any,
) -> Balancer:
    """A balancer for `policy` (one of POLICIES) drawing randomness from `rng`.

    `local_zone` wraps the policy in zone-aware preference (zone.py); `slow_start` > 0
    ramps a new host's weight over that many seconds after its `since` (slow_start.py;
    weighted_round_robin, weighted_random, least_request and peak_ewma only). `options`
    are the policy's own (see `policy_options` and docs/balancing.md). Raises
    `BalanceError` (a ValueError) naming what is wrong and what is valid.
    """
    _check_policy(policy)
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    if local_zone is not None and (not isinstance(local_zone, str) or not local_zone):
        raise BalanceError(
            "local_zone", f"must be a non-empty zone name or None, got {local_zone!r}"
        )
    if not _number(slow_start, float) or slow_start < 0:
        raise BalanceError("slow_start", f"must be seconds >= 0, got {slow_start!r}")
    if slow_start > 0 and policy not in RAMPING:
        raise BalanceError(
            "slow_start",
            f"policy {policy!r} does not ramp weights; slow start applies to "
            f"{', '.join(p for p in POLICIES if p in RAMPING)}",
        )
    valid = set(_POLICY_OPTIONS[policy])
    if slow_start > 0:
        valid |= set(_SLOW_START_OPTIONS)
    if local_zone is not None:
        valid |= set(_ZONE_OPTIONS)
    for name in options:
        if name in valid:
            continue
        if name in _SLOW_START_OPTIONS:
            raise BalanceError(f"option {name}", "applies only with slow_start > 0")
        if name in _ZONE_OPTIONS:
            raise BalanceError(f"option {name}", "applies only with local_zone")
        listed = ", ".join(sorted(valid)) or "none"
        raise BalanceError(
            f"option {name}", f"unknown option for policy {policy!r}; valid: {listed}"
        )

    own = _resolve(options, _POLICY_OPTIONS[policy])
    ramp = None
    if slow_start > 0:
        values = _resolve(options, _SLOW_START_OPTIONS)
        ramp = SlowStart(
            window=float(slow_start),
            aggression=values["slow_start_aggression"],
            min_weight=values["slow_start_min_weight"],
        )
    zone = None
    if local_zone is not None:
        values = _resolve(options, _ZONE_OPTIONS)
        zone = ZonePreference(
            local_zone=local_zone,
            min_hosts=values["zone_min_hosts"],
            local_traffic_share=values["local_traffic_share"],
        )
    latency = None
    if policy == "peak_ewma":
        latency = LatencyModel(PeakEwmaConfig(**own))
    return Pool(
        policy=policy,
        make_picker=_picker_factory(policy, rng, own, latency),
        rng=rng,
        hashed=policy in HASHED,
        zone=zone,
        slow_start=ramp,
        latency=latency,
        max_hosts=own["table_size"] if policy == "maglev" else None,
    )


def _picker_factory(
    policy: str, rng: random.Random, own: Mapping[str, Any], latency: LatencyModel | None
) -> Callable[[], Picker]:
    if policy == "round_robin":
        return lambda: RoundRobinPicker(rng)
    if policy == "weighted_round_robin":
        return SmoothWeightedPicker
    if policy == "random":
        return lambda: UniformPicker(rng)
    if policy == "weighted_random":
        return lambda: WeightedPicker(rng)
    if policy == "least_request":
        return lambda: LeastRequestPicker(
            rng, choice_count=own["choice_count"], bias=own["active_request_bias"]
        )
    if policy == "peak_ewma":
        assert latency is not None
        model = latency
        return lambda: PeakEwmaPicker(rng, model)
    if policy == "ring_hash":
        return lambda: RingHashPicker(rng, points_per_weight=own["points_per_weight"])
    assert policy == "maglev", policy
    return lambda: MaglevPicker(rng, table_size=own["table_size"])
