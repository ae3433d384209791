"""Slow start: a new host's weight ramps up over a window, as Envoy's slow_start_config.

Theory of operation: while a host is younger than the window (age = now - host.since),
its effective weight is

    weight * max(min_weight, (age / window) ** (1 / aggression))

and afterwards its full weight. aggression 1.0 (the default, Envoy's) ramps linearly;
larger values ramp faster early, smaller ones slower. min_weight (default 0.1, Envoy's
min_weight_percent of 10%) keeps a brand-new host from getting no traffic at all. A host
whose `since` lies in the future (clock skew between the caller's sources) counts as age
0. Envoy floors the age at one second, an artefact of its second-grained clock; the
min_weight floor already covers that here.

The pool applies it to the policies that honour weights and ramp sensibly:
weighted_round_robin, weighted_random, least_request and peak_ewma (Envoy offers it for
round robin and least request). round_robin and random ignore weights, and the hash
policies would move keys on every step of the ramp, so `make_balancer` refuses slow
start for them rather than ignore it.

Because the effective weight changes with time, the pool re-weighs its hosts every
`window / RAMP_STEPS` seconds while any host is ramping (an O(n) rebuild, at most
RAMP_STEPS times per new host) and not at all otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_AGGRESSION = 1.0  # Envoy's default
DEFAULT_MIN_WEIGHT = 0.1  # Envoy's min_weight_percent default, 10%
RAMP_STEPS = 40  # re-weigh steps per window: weights move in 2.5% steps of the ramp


@dataclass(frozen=True, slots=True, kw_only=True)
class SlowStart:
    window: float  # seconds, > 0
    aggression: float = DEFAULT_AGGRESSION
    min_weight: float = DEFAULT_MIN_WEIGHT

    def factor(self, age: float) -> float:
        """The share of its weight a host of this age gets, in [min_weight, 1]."""
        if age >= self.window:
            return 1.0
        if age <= 0:
            return self.min_weight
        return max(self.min_weight, math.pow(age / self.window, 1.0 / self.aggression))

    @property
    def step(self) -> float:
        return self.window / RAMP_STEPS
