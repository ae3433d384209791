"""Aggregation: combine per-partition results with an associative function.

The combiner need only be associative (``combine(combine(a, b), c) == combine(a,
combine(b, c))``), not commutative, so the partition order is always kept: only
*neighbouring* results are ever combined.

* ``tree_reduce`` combines a complete list pairwise, level by level -- the shape an
  executor uses when it can run the combines of one level in parallel.
* ``RunMerger`` combines results *as they arrive*, in any order: it keeps maximal runs of
  consecutive partitions, each already folded to one value, and merges a new result with
  the run ending just before it and the run starting just after it. The answer equals the
  left-to-right fold whatever the arrival order, and the driver never holds more than one
  value per gap in the arrivals. The local executor uses it, in the driver.

Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RunMerger", "tree_reduce"]

Combine = Callable[[Any, Any], Any]


def tree_reduce(values: Sequence[Any], combine: Combine) -> Any:
    """Fold ``values`` (at least one) with ``combine`` as a balanced tree of pairs."""
    if not values:
        raise ValueError("nothing to reduce: no values")
    level = list(values)
    while len(level) > 1:
        nxt = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class RunMerger:
    """Fold partition results arriving in any order into their in-order combination.

    ``add(index, value)`` once per partition ``0..parts-1``; ``result()`` when all are in.
    Without a combiner, ``result()`` is the list of values in partition order.
    """

    def __init__(self, parts: int, combine: Combine | None) -> None:
        if parts <= 0:
            raise ValueError(f"parts must be > 0, got {parts}")
        self.parts = parts
        self._combine = combine
        self._values: list[Any] = [None] * parts if combine is None else []
        self._by_start: dict[int, tuple[int, Any]] = {}  # start -> (stop, folded value)
        self._by_stop: dict[int, int] = {}  # stop -> start
        self._seen = 0

    def add(self, index: int, value: Any) -> None:
        if not 0 <= index < self.parts:
            raise ValueError(f"partition {index} out of range 0..{self.parts - 1}")
        self._seen += 1
        combine = self._combine
        if combine is None:
            self._values[index] = value
            return
        start, stop = index, index + 1
        left = self._by_stop.pop(start, None)
        if left is not None:
            _, left_value = self._by_start.pop(left)
            value = combine(left_value, value)
            start = left
        right = self._by_start.pop(stop, None)
        if right is not None:
            right_stop, right_value = right
            del self._by_stop[right_stop]
            value = combine(value, right_value)
            stop = right_stop
        self._by_start[start] = (stop, value)
        self._by_stop[stop] = start

    @property
    def complete(self) -> bool:
        return self._seen >= self.parts

    def result(self) -> Any:
        if not self.complete:
            raise ValueError(f"only {self._seen} of {self.parts} partitions have arrived")
        if self._combine is None:
            return self._values
        return self._by_start[0][1]
