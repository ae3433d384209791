"""Random and weighted random: independent draws from the injected RNG.

Theory of operation: `UniformPicker` draws a member uniformly; `WeightedPicker` draws a
point in [0, total weight) and bisects the prefix sums of the members' effective weights
(built in `rebuild`), so a host is chosen with probability weight / total.

Exclusion is rejection sampling: draw, and if the draw is excluded draw again, a few
times; only if that keeps failing (most of the pool excluded) build the list of
available members and draw from it. Both paths draw from exactly the distribution
restricted to the available hosts, and the common case (nothing or one host excluded)
neither allocates nor scans.

Rules: uniform `pick` is O(1), weighted `pick` O(log n); `rebuild` is O(n).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Collection, Sequence
from itertools import accumulate
from typing import ClassVar

from .picker import available
from .state import HostState

# Draws before falling back to an exact scan. With a share e of the pool excluded, all
# tries fail with probability e**REJECTION_TRIES: rare unless most of it is excluded.
REJECTION_TRIES = 4


class UniformPicker:
    weighted: ClassVar[bool] = False

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._members: Sequence[HostState] = ()

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._members = tuple(members)

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        members = self._members
        n = len(members)
        if n == 0:
            return None
        randrange = self._rng.randrange
        if not exclude:
            return members[randrange(n)]
        for _ in range(REJECTION_TRIES):
            member = members[randrange(n)]
            if member.id not in exclude:
                return member
        rest = available(members, exclude)
        return rest[randrange(len(rest))] if rest else None


class WeightedPicker:
    weighted: ClassVar[bool] = True

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._members: Sequence[HostState] = ()
        self._cumulative: list[float] = []
        self._total = 0.0

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._members = tuple(members)
        self._cumulative = list(accumulate(m.weight for m in self._members))
        self._total = self._cumulative[-1] if self._cumulative else 0.0

    def _draw(self) -> HostState:
        # random() < 1, so the point is below the total; min() guards the float edge
        # where accumulated sums round below it.
        index = bisect_right(self._cumulative, self._rng.random() * self._total)
        return self._members[min(index, len(self._members) - 1)]

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        if not self._members:
            return None
        if not exclude:
            return self._draw()
        for _ in range(REJECTION_TRIES):
            member = self._draw()
            if member.id not in exclude:
                return member
        rest = available(self._members, exclude)
        if not rest:
            return None
        cumulative = list(accumulate(m.weight for m in rest))
        index = bisect_right(cumulative, self._rng.random() * cumulative[-1])
        return rest[min(index, len(rest) - 1)]
