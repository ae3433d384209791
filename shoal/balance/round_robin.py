"""Round robin: each host in turn, ignoring weights.

Theory of operation: a cursor walks the members in pool order. The first `rebuild` that
sees members puts the cursor at a random offset drawn from the injected RNG, so a fleet
of clients that all start at once does not send its first request to the same host. A
later `rebuild` keeps the cursor (modulo the new size), so a pool change does not restart
the cycle at the same place everywhere.

Rules: `pick` is O(1) when nothing is excluded; an excluded host is stepped over (the
cursor moves past it), so a pick costs at most one step per member and never allocates.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import ClassVar

from .state import HostState


class RoundRobinPicker:
    weighted: ClassVar[bool] = False

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._members: Sequence[HostState] = ()
        self._cursor: int | None = None  # None until the first non-empty pool

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._members = tuple(members)
        if not self._members:
            return
        if self._cursor is None:
            self._cursor = self._rng.randrange(len(self._members))
        else:
            self._cursor %= len(self._members)

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        members = self._members
        n = len(members)
        if n == 0:
            return None
        cursor = self._cursor or 0
        for _ in range(n):
            member = members[cursor]
            cursor = cursor + 1 if cursor + 1 < n else 0
            if not exclude or member.id not in exclude:
                self._cursor = cursor
                return member
        self._cursor = cursor
        return None
