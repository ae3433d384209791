"""Maglev hashing (Eisenbud et al., NSDI 2016), weighted as Envoy's maglev policy.

Theory of operation: a lookup table of M slots (M prime, default 65537 as Envoy) maps a
key's point to a host in O(1): ``table[point mod M]``. Every host has a preference list,
a permutation of the slots, ``(offset + j * skip) mod M`` with offset and skip from a
BLAKE2b hash of its id (M prime, so every skip in [1, M) visits every slot). `rebuild`
fills the table in rounds: in each round every host in turn claims the next slot of its
preference list that is still free, until the table is full. Because each host's list
depends on its id alone, a host joining or leaving changes only a small part of the
table (the paper's "minimal disruption"; tests bound it), and every host gets nearly
M / n slots (balance within a fraction of a percent at n << M).

Weights follow Envoy's scheme: a host takes its turn in a round only when it is owed one,
i.e. host i has claimed fewer than ``round * weight_i / max_weight`` slots, so hosts
claim slots at rates proportional to their weights and the heaviest claims every round.

An excluded owner falls through to the key's next Maglev preference: the slots
``point + k * stride mod M`` for k = 1, 2, ..., with the stride taken from the key's
independent high bits. That is deterministic for a key, and spreads an excluded host's
keys over the others in proportion to their table share.

Cost: `rebuild` is O(M log M) probes (about 30-60 ms in CPython for M = 65537), `pick`
O(1) plus about 1 / (available share) probes when the owner is excluded.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import ClassVar

from .hashing import host_permutation, placement
from .picker import all_excluded
from .state import HostState

DEFAULT_TABLE_SIZE = 65537  # Envoy's default, a prime


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


class MaglevPicker:
    weighted: ClassVar[bool] = True

    def __init__(self, rng: random.Random, *, table_size: int = DEFAULT_TABLE_SIZE) -> None:
        if not is_prime(table_size):
            raise ValueError(f"maglev table_size must be prime, got {table_size}")
        self._rng = rng
        self._size = table_size
        self._members: Sequence[HostState] = ()
        self._table: list[HostState] = []
        self._permutations: dict[str, tuple[int, int]] = {}  # cached by host id

    def rebuild(self, members: Sequence[HostState]) -> None:
        # Fill order must not depend on the order the pool arrived in, or two processes
        # with the same pool would build different tables: sort by id.
        self._members = tuple(members)
        ordered = sorted(self._members, key=lambda m: m.id)
        size = self._size
        self._permutations = {
            m.id: self._permutations.get(m.id) or host_permutation(m.id, size) for m in ordered
        }
        if not ordered:
            self._table = []
            return
        max_weight = max(m.weight for m in ordered)
        rates = [m.weight / max_weight for m in ordered]
        slots = [self._permutations[m.id][0] for m in ordered]  # next candidate slot
        skips = [self._permutations[m.id][1] for m in ordered]
        claimed = [0] * len(ordered)
        owner_index = [-1] * size
        filled = 0
        round_no = 0
        while filled < size:
            round_no += 1
            for i, rate in enumerate(rates):
                if claimed[i] >= round_no * rate:
                    continue  # not owed a slot this round
                slot = slots[i]
                skip = skips[i]
                while owner_index[slot] >= 0:
                    slot += skip
                    if slot >= size:
                        slot -= size
                owner_index[slot] = i
                slots[i] = slot + skip - size if slot + skip >= size else slot + skip
                claimed[i] += 1
                filled += 1
                if filled == size:
                    break
        self._table = [ordered[i] for i in owner_index]

    @property
    def table_size(self) -> int:
        return self._size

    def owners(self) -> Sequence[HostState]:
        """The table, slot by slot (for tests and diagnostics)."""
        return self._table

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        table = self._table
        if not table:
            return None
        if point is None:
            point = self._rng.getrandbits(128)
        size = self._size
        slot = placement(point) % size
        owner = table[slot]
        if not exclude or owner.id not in exclude:
            return owner
        if all_excluded(self._members, exclude):
            return None
        stride = (point >> 64) % (size - 1) + 1
        for _ in range(size - 1):
            slot += stride
            if slot >= size:
                slot -= size
            owner = table[slot]
            if owner.id not in exclude:
                return owner
        return None  # unreachable: some member is available and owns a slot
