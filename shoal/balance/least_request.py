"""Least request: Envoy's least_request policy.

Theory of operation, as Envoy's `LeastRequestLoadBalancer`:

* All weights equal: power of two choices (p2c.py). Draw `choice_count` (default 2)
  distinct random available hosts and take the one with the fewest outstanding requests;
  the first draw wins a tie. O(1).
* Weights differ (configured weights, or a host ramping under slow start): an earliest
  deadline first schedule over dynamic weights, ``weight / (outstanding + 1) ** bias``
  (active_request_bias, default 1.0). Every host has a deadline; a pick takes the
  earliest, and gives it the next deadline ``deadline + 1 / dynamic weight`` computed at
  that moment. With no load this is weighted round robin (a host's share is its weight's
  share); a host with requests piling up gets a later next turn, so it is picked less
  and less but never drained, as Envoy's documentation says. bias 0 ignores load
  (weighted round robin); a larger bias lets load weigh more. O(log n).

New hosts start at a random phase of their first period (deadline = u / weight, u drawn
from the RNG), so clients started together do not pick in lockstep; hosts that stay
across a `rebuild` keep their deadlines. An excluded host that comes up is passed over
as if picked (its turn is used, as a retry's rejected pick uses it in Envoy), so it does
not bank turns while excluded and come back in a burst.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Collection, Sequence
from typing import ClassVar

from .p2c import PairSampler
from .picker import available
from .state import HostState

DEFAULT_CHOICE_COUNT = 2  # Envoy's choice_count default
DEFAULT_ACTIVE_REQUEST_BIAS = 1.0  # Envoy's active_request_bias default


class LeastRequestPicker:
    weighted: ClassVar[bool] = True

    def __init__(
        self,
        rng: random.Random,
        *,
        choice_count: int = DEFAULT_CHOICE_COUNT,
        bias: float = DEFAULT_ACTIVE_REQUEST_BIAS,
    ) -> None:
        self._rng = rng
        self._choices = choice_count
        self._bias = bias
        self._sampler = PairSampler(rng)
        # EDF schedule, used only while weights differ: (deadline, sequence, member).
        self._heap: list[tuple[float, int, HostState]] = []
        self._sequence = 0  # breaks deadline ties in insertion order, never compares hosts
        self._clock = 0.0  # the deadline of the last pick

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._sampler.rebuild(members)
        if self._sampler.equal_weights:
            self._heap = []
            return
        kept = {entry[2].id: entry[0] for entry in self._heap}
        heap = []
        for member in self._sampler.members:
            deadline = kept.get(member.id)
            if deadline is None:
                deadline = self._clock + self._rng.random() / member.weight
            heap.append((deadline, self._next_sequence(), member))
        heapq.heapify(heap)
        self._heap = heap

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def dynamic_weight(self, member: HostState) -> float:
        """Envoy's weight / (active requests + 1) ** active_request_bias."""
        if self._bias == 1.0:
            return member.weight / (member.outstanding + 1)
        return member.weight / math.pow(member.outstanding + 1, self._bias)

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        if not self._sampler.equal_weights:
            return self._pick_scheduled(exclude)
        if self._choices == 2:
            return self._sampler.best(exclude, _fewer_outstanding)
        members = available(self._sampler.members, exclude) if exclude else self._sampler.members
        best: HostState | None = None
        # sample() over a range draws k distinct indices without listing the range.
        for index in self._rng.sample(range(len(members)), min(self._choices, len(members))):
            member = members[index]
            if best is None or member.outstanding < best.outstanding:
                best = member
        return best

    def _pick_scheduled(self, exclude: Collection[str]) -> HostState | None:
        heap = self._heap
        passed = []
        chosen = None
        while heap:
            deadline, _, member = heapq.heappop(heap)
            self._clock = deadline
            passed.append((deadline + 1.0 / self.dynamic_weight(member), member))
            if not exclude or member.id not in exclude:
                chosen = member
                break
        for deadline, member in passed:
            heapq.heappush(heap, (deadline, self._next_sequence(), member))
        return chosen


def _fewer_outstanding(a: HostState, b: HostState) -> bool:
    return a.outstanding <= b.outstanding
