"""The power of two choices: draw two distinct available hosts at random, keep the better.

Mitzenmacher's result (the thesis Envoy's least_request cites): comparing two random
hosts by load is nearly as good as scanning all of them, at O(1). The load-aware
policies build on this module: least_request.py (Envoy's, when weights are equal) and
peak_ewma.py (Finagle's / Linkerd's).

Theory of operation: `PairSampler` draws two *distinct* members (with two hosts in the
pool both are always compared; drawing with replacement, as Envoy does, would hand the
pick to one host without a comparison half the time). When the members' weights differ
the draws are weighted: the first with probability weight / total, the second the same
way among the rest (the first's interval cut out of the prefix sums, so it stays exact
and O(log n)). The caller's comparison then decides by load alone, and the first draw
wins a tie, so with no load to tell hosts apart traffic follows the weights exactly,
and under load it goes to the less loaded of two weight-chosen hosts. With equal weights
the draws are uniform, O(1), and this is plain P2C.

With `exclude` non-empty the available members are listed first (O(n), only on
retries); with nothing excluded a pick draws two numbers and allocates nothing.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Collection, Sequence
from itertools import accumulate

from .picker import available
from .state import HostState


class PairSampler:
    """Draws candidate pairs from one set of members; `rebuild` when they change."""

    __slots__ = ("_cumulative", "_members", "_rng", "_total", "equal_weights")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._members: Sequence[HostState] = ()
        self._cumulative: list[float] = []
        self._total = 0.0
        self.equal_weights = True

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._members = tuple(members)
        weights = {m.weight for m in self._members}
        self.equal_weights = len(weights) <= 1
        self._cumulative = [] if self.equal_weights else list(accumulate(m.weight for m in members))
        self._total = self._cumulative[-1] if self._cumulative else 0.0

    @property
    def members(self) -> Sequence[HostState]:
        return self._members

    def best(
        self, exclude: Collection[str], better: Callable[[HostState, HostState], bool]
    ) -> HostState | None:
        """The winner of one comparison of two distinct random available members
        (`better(a, b)`: does the first draw `a` win?); the only one if one is left."""
        if exclude:
            rest = available(self._members, exclude)
            if len(rest) == len(self._members):
                return self._best_of(self._members, self._cumulative, self._total, better)
            if self.equal_weights:
                return self._best_of(rest, [], 0.0, better)
            cumulative = list(accumulate(m.weight for m in rest))
            return self._best_of(rest, cumulative, cumulative[-1] if rest else 0.0, better)
        return self._best_of(self._members, self._cumulative, self._total, better)

    def _best_of(
        self,
        members: Sequence[HostState],
        cumulative: Sequence[float],
        total: float,
        better: Callable[[HostState, HostState], bool],
    ) -> HostState | None:
        n = len(members)
        if n < 2:
            return members[0] if n else None
        rng = self._rng
        if not cumulative:
            i = rng.randrange(n)
            j = rng.randrange(n - 1)
            if j >= i:
                j += 1
        else:
            i = min(bisect_right(cumulative, rng.random() * total), n - 1)
            start = cumulative[i - 1] if i else 0.0
            width = cumulative[i] - start
            # A point in the rest of the line, mapped past i's interval.
            u = rng.random() * (total - width)
            if u >= start:
                u += width
            j = min(bisect_right(cumulative, u), n - 1)
            if j == i:  # only by float rounding at an interval's edge
                j = i + 1 if i + 1 < n else i - 1
        a = members[i]
        b = members[j]
        return a if better(a, b) else b
