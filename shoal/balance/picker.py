"""The internal seam between the pool and a policy: a `Picker` over one set of hosts.

The pool (`pool.py`) splits its hosts into tiers (positive weight, then weight 0) and,
when zone-aware, into the local zone and the rest; each part gets its own picker of the
same policy. A picker only chooses: the pool owns the host records, counts requests and
decides which part to ask first.

Contract:

* `rebuild(members)` is called by the pool whenever the part's hosts or their weights
  change (an `update`, a slow-start step). It does the expensive work (prefix sums,
  rings, Maglev tables) so that `pick` stays cheap. `members` may be empty.
* `pick(now, point, exclude)` returns one of the members whose id is not in `exclude`,
  or None when there is none. `point` is the request key's 128-bit hash for the hash
  policies (None for the others); `exclude` is usually empty, and a picker must not
  allocate anything proportional to its members when it is.
* `weighted` says whether the policy honours weights; the zone split measures the local
  share by weight when it does and by host count when it does not.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import ClassVar, Protocol

from .state import HostState


class Picker(Protocol):
    weighted: ClassVar[bool]

    def rebuild(self, members: Sequence[HostState]) -> None: ...

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None: ...


def available(members: Sequence[HostState], exclude: Collection[str]) -> list[HostState]:
    """The members not in `exclude`. O(n) and allocating: only for picks that exclude."""
    return [m for m in members if m.id not in exclude]


def all_excluded(members: Sequence[HostState], exclude: Collection[str]) -> bool:
    """True when no member is available. Cheap unless `exclude` could cover them all."""
    if len(exclude) < len(members):
        return False
    return all(m.id in exclude for m in members)
