"""P2C over peak-EWMA latency: Finagle's PeakEwma load metric, as Linkerd uses it.

A host's cost is its latency estimate times the requests it would have in flight,
``estimate * (outstanding + 1)``; a pick compares two random hosts (p2c.py) and takes
the cheaper. Weights (configured, or ramping under slow start) set the odds of being
drawn as a candidate, not the cost: at equal cost the first draw wins, so traffic
follows the weights until latency or load tells hosts apart.

The estimate is a moving average of request latency that is hyper-sensitive to peaks
and recovers cautiously:

* A sample above the current estimate replaces it at once.
* A sample below it moves the estimate toward the sample with weight ``1 - w``,
  ``w = exp(-dt / tau)``, where dt is the time since the previous sample: an average over
  an unevenly spaced series (Eckner), so a burst of samples counts by the time it spans,
  not by its count. tau is `decay` (default 10 s: Finagle's decayTime default, Linkerd's
  EWMA_DECAY).
* Between samples the estimate fades toward zero with the same time constant,
  ``estimate(now) = rtt * exp(-(now - rtt_at) / tau)``. That is what makes a host that
  was slow, and so stopped getting traffic, get a probe again later. Finagle and tower
  get the same fade by decaying the stored value on every read of the cost, which makes
  their estimate depend on how often the balancer reads it; here a pick only looks, and
  a sample blends with the faded estimate, so the estimate is a function of the samples
  and their times alone.

Both the guess for a new host and the penalty for a failure are relative to one
reference, the *slowest recent success*: the largest, over the pool's hosts, of the
latency of each host's last successful request (`default_rtt`, 30 ms as Linkerd's
EWMA_DEFAULT_RTT, while no request has succeeded). It is built from real successful
latencies only, so neither a guess nor a penalty can feed back into it, and it needs no
tuning per service: it scales with the service's own latency.

Hosts that have not finished a request yet are pessimistic: their estimate is the
reference, so a new host is taken for as slow as the slowest host (Linkerd2-proxy
starts every endpoint at its default RTT estimate; Finagle charges an unmeasured host a
huge penalty while its first request is in flight). It never wins a comparison against
a known-faster host at equal load, yet gets traffic as the pool gets busy, and its first
sample replaces the guess outright. With nothing measured every host is estimated at
`default_rtt` and the policy degrades to least outstanding requests.

Failures count as latency, so a host that fails fast does not look fast: a failed
request is a sample of ``max(latency, failure_multiplier * reference)`` (default 4: a
failing host is chosen over a healthy one of the slowest kind only when that one has
three or more requests in flight). The peak rule makes the penalty take effect on the
first failure; a host that recovers comes back as its estimate fades and its successes
pull it down.

Rules: `pick` is O(1) with nothing excluded and equal weights (O(log n) with unequal
ones). The reference is kept incrementally; it costs an O(n) scan only when the pool
changes or the slowest host's latest success is faster than its previous one. An
estimate never becomes infinite or NaN: the pool rejects non-finite latencies and the
penalty is bounded by real latencies.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar

from .p2c import PairSampler
from .state import HostState

DEFAULT_DECAY = 10.0  # seconds: Finagle's decayTime default, Linkerd2-proxy's EWMA_DECAY
DEFAULT_RTT = 0.030  # seconds: Linkerd2-proxy's EWMA_DEFAULT_RTT
DEFAULT_FAILURE_MULTIPLIER = 4.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PeakEwmaConfig:
    decay: float = DEFAULT_DECAY
    default_rtt: float = DEFAULT_RTT
    failure_multiplier: float = DEFAULT_FAILURE_MULTIPLIER


class LatencyModel:
    """The peak-EWMA estimates of one pool: read by the picker, fed by `finished`."""

    def __init__(self, config: PeakEwmaConfig) -> None:
        self.config = config
        self._tau = config.decay
        self._pool: Sequence[HostState] = ()
        # The reference, kept incrementally: recomputed over the pool only when the pool
        # changes or the host holding the maximum gets faster.
        self._slowest = -1.0
        self._slowest_id: str | None = None

    def track(self, pool: Sequence[HostState]) -> None:
        """The whole pool (every tier and zone): the reference for guesses and penalties."""
        self._pool = pool
        self._recompute()

    def _recompute(self) -> None:
        self._slowest, self._slowest_id = -1.0, None
        for state in self._pool:
            if state.ok_latency > self._slowest:
                self._slowest, self._slowest_id = state.ok_latency, state.id

    def _faded(self, state: HostState, now: float) -> float:
        elapsed = now - state.rtt_at
        return state.rtt * math.exp(-elapsed / self._tau) if elapsed > 0 else state.rtt

    def reference(self) -> float:
        """The slowest recent success: the largest last-success latency in the pool."""
        return self._slowest if self._slowest >= 0 else self.config.default_rtt

    def estimate(self, state: HostState, now: float) -> float:
        """The latency estimate of `state` at `now`, in seconds."""
        return self._faded(state, now) if state.measured else self.reference()

    def cost(self, state: HostState, now: float) -> float:
        return self.estimate(state, now) * (state.outstanding + 1)

    def observe(self, state: HostState, now: float, latency: float, ok: bool) -> None:
        """Fold one finished request into `state`'s estimate."""
        if ok:
            sample = state.ok_latency = latency
            if latency >= self._slowest:
                self._slowest, self._slowest_id = latency, state.id
            elif state.id == self._slowest_id:
                self._recompute()  # the slowest got faster: who is slowest now?
        else:
            sample = max(latency, self.config.failure_multiplier * self.reference())
        if not state.measured:
            state.rtt = sample
            state.measured = True
        else:
            elapsed = max(now - state.rtt_at, 0.0)
            w = math.exp(-elapsed / self._tau)
            faded = state.rtt * w
            state.rtt = sample if sample > faded else faded * w + sample * (1.0 - w)
        state.rtt_at = max(now, state.rtt_at)


class PeakEwmaPicker:
    weighted: ClassVar[bool] = True

    def __init__(self, rng: random.Random, model: LatencyModel) -> None:
        self._model = model
        self._sampler = PairSampler(rng)
        self._now = 0.0  # the pick in progress, for the comparison callback

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._sampler.rebuild(members)

    def _better(self, a: HostState, b: HostState) -> bool:
        cost = self._model.cost
        return cost(a, self._now) <= cost(b, self._now)

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        self._now = now
        return self._sampler.best(exclude, self._better)
