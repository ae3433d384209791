"""Ring hash (Karger et al.'s consistent hashing, with virtual nodes, as Envoy's ring_hash).

Theory of operation: every host owns points on a 64-bit ring, at the BLAKE2b hashes of
``"{id}#{replica}"`` for replica = 0, 1, 2, ...; a key belongs to the owner of the first
point at or after the key's own point (wrapping round). `pick` is a bisect over the
sorted points, O(log R) for R points.

How many points a host owns: ``max(1, round(points_per_weight * weight / unit))``, where
unit is the largest power of two not above the mean weight of the ring's hosts. The count
depends on the host's own weight and on which octave the mean weight is in, nothing else,
so with equal weights a host's points never change when others join or leave. That gives
the property the issue asks for, exactly: when a host leaves, only the keys it owned
move (each to the next point on the ring), and when one joins it takes only keys for
itself, about 1/n of them. Envoy instead scales the whole ring so it holds at least
minimum_ring_size (1024) points, which re-cuts every host's share when the pool size
changes; our default, 256 points per unit of weight, reaches Envoy's 1024 with four
hosts and grows with the pool (R < 2 * 256 * n + n), and the unit keeps a pool whose
weights are all 100 the same size as one whose weights are all 1. Weights are honoured
to the resolution of the point counts.

An excluded owner falls through to the next point clockwise whose host is available:
deterministic, and the excluded host's keys spread over the others in proportion to
their arcs, as they would if it had left. A host's points are cached by id (and dropped
when it leaves), so an `update` hashes only new hosts and sorts.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Collection, Sequence
from typing import ClassVar

from .hashing import host_point, placement
from .picker import all_excluded
from .state import HostState

DEFAULT_POINTS_PER_WEIGHT = 256
INDEX_BITS = 24  # host indices in a sort entry: up to 16M hosts
INDEX_MASK = (1 << INDEX_BITS) - 1


def weight_unit(weights: Sequence[float]) -> float:
    """The largest power of two not above the mean weight (1.0 for an empty ring)."""
    if not weights:
        return 1.0
    mean = sum(weights) / len(weights)
    return 2.0 ** math.floor(math.log2(mean)) if mean > 0 else 1.0


def point_count(weight: float, unit: float, points_per_weight: int) -> int:
    return max(1, round(points_per_weight * weight / unit))


class RingHashPicker:
    weighted: ClassVar[bool] = True

    def __init__(
        self, rng: random.Random, *, points_per_weight: int = DEFAULT_POINTS_PER_WEIGHT
    ) -> None:
        self._rng = rng
        self._per_weight = points_per_weight
        self._members: Sequence[HostState] = ()
        self._points: list[int] = []  # sorted ring positions
        self._owners: list[HostState] = []  # the owner of each position
        # host id -> its points (shifted by INDEX_BITS), in replica order
        self._cache: dict[str, list[int]] = {}

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._members = tuple(members)
        # Index hosts by id order, so that ties between two hosts' points (a 64-bit
        # collision) go the same way in every process whatever order the pool came in.
        ordered = sorted(self._members, key=lambda m: m.id)
        unit = weight_unit([m.weight for m in ordered])
        cache: dict[str, list[int]] = {}
        # Each entry is one int, point << INDEX_BITS | host index: sorting plain ints is
        # several times faster than sorting tuples, and the ring is rebuilt on updates.
        entries: list[int] = []
        for index, member in enumerate(ordered):
            count = point_count(member.weight, unit, self._per_weight)
            points = self._cache.get(member.id, [])
            if len(points) < count:
                points = points + [
                    host_point(member.id, r) << INDEX_BITS for r in range(len(points), count)
                ]
            cache[member.id] = points
            entries.extend([p | index for p in points[:count]])
        entries.sort()
        self._cache = cache
        self._points = [e >> INDEX_BITS for e in entries]
        self._owners = [ordered[e & INDEX_MASK] for e in entries]

    @property
    def size(self) -> int:
        """Points on the ring."""
        return len(self._points)

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        points = self._points
        size = len(points)
        if size == 0:
            return None
        if point is None:
            point = self._rng.getrandbits(64)
        index = bisect_left(points, placement(point))
        if index == size:
            index = 0
        owner = self._owners[index]
        if not exclude or owner.id not in exclude:
            return owner
        if all_excluded(self._members, exclude):
            return None
        owners = self._owners
        for step in range(1, size):
            owner = owners[(index + step) % size]
            if owner.id not in exclude:
                return owner
        return None  # unreachable: some member is available and owns a point
