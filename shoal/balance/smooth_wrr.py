"""Smooth weighted round robin: nginx's algorithm (ngx_http_upstream_round_robin.c).

Theory of operation: every host carries a running `current` weight. On each pick, every
available host's `current` grows by its effective weight; the host with the largest
`current` wins (the earliest in pool order on a tie) and its `current` drops by the sum
of the effective weights that took part. The sequence is deterministic, spreads a heavy
host's turns out instead of bunching them (weights 5, 1, 1 give a a b a c a a, not
a a a a a b c), and from an all-zero start it repeats every sum(weights) picks: for
integer weights, any window of sum(weights) consecutive picks holds each host exactly
`weight` times (tests/balance/test_smooth_wrr.py checks this as a property).

nginx also lowers a peer's effective weight after a failure and lets it climb back; we do
not: failing hosts are the job of outlier ejection (`exclude`), which keeps this policy's
fairness exact. Effective weight here is the host's weight after slow start.

Rules: `pick` is O(n) in the members (nginx's algorithm; fine for n in the tens), never
allocates, and an excluded host neither takes part nor accumulates. `current` lives on
the shared `HostState`, so it survives `update` for hosts that stay.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import ClassVar

from .state import HostState


class SmoothWeightedPicker:
    weighted: ClassVar[bool] = True

    def __init__(self) -> None:
        self._members: Sequence[HostState] = ()

    def rebuild(self, members: Sequence[HostState]) -> None:
        self._members = tuple(members)

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        best: HostState | None = None
        best_current = 0.0
        total = 0.0
        for member in self._members:
            if exclude and member.id in exclude:
                continue
            current = member.current + member.weight
            member.current = current
            total += member.weight
            if best is None or current > best_current:
                best = member
                best_current = current
        if best is not None:
            best.current = best_current - total
        return best
