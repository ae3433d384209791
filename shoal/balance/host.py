"""What a balancer balances over (`Host`) and the interface every policy offers (`Balancer`).

A `Host` is one instance as the balancer sees it: an id, a weight, a zone and the time it
joined the pool. It is a frozen value, validated on construction, so a pool can be built
once and shared. The `Balancer` protocol is the whole surface the SDK and the gateway use:
`update` the pool, `pick` a host for a request, tell it when the request `started` and
`finished`.

Rules every balancer keeps (tests/balance/test_common.py checks them for all policies):

* pure: no I/O, no clock, no global randomness; `now` is the caller's monotonic clock in
  seconds and all randomness comes from the `random.Random` given to `make_balancer`;
* `pick` returns a host of the current pool, never one in `exclude`, and None only when
  the pool is empty or every host is excluded;
* weight 0 means "backup": such a host is never picked while any host of positive weight
  is available (not excluded); when none is, the weight-0 hosts are picked among
  themselves as if they all had weight 1. Draining an instance is setting its weight to 0;
* `update` keeps per-host state (outstanding requests, latency estimate, smooth-WRR
  current weight, ring points) for hosts that stay, by id, and drops it for hosts that go;
* `started`/`finished` for an id that is not in the pool (a host that left while its
  request was in flight) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import BalanceError


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """One instance in a pool. `id` is unique in the pool (the registry's instance id)."""

    id: str
    weight: float = 1.0  # >= 0; 0 = backup, see the module docstring
    zone: str = ""
    since: float = 0.0  # when it joined, on the caller's clock (for slow start)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise BalanceError("id", f"must be a non-empty string, got {self.id!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise BalanceError("weight", f"must be a number, got {self.weight!r}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise BalanceError("weight", f"must be finite and >= 0, got {self.weight!r}")
        if not isinstance(self.zone, str):
            raise BalanceError("zone", f"must be a string, got {self.zone!r}")
        if isinstance(self.since, bool) or not isinstance(self.since, int | float):
            raise BalanceError("since", f"must be a number, got {self.since!r}")
        if not math.isfinite(self.since):
            raise BalanceError("since", f"must be finite, got {self.since!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLoad:
    """What a balancer knows of one host at a moment (for metrics and debugging)."""

    id: str
    outstanding: int  # started and not yet finished
    weight: float  # the weight the policy uses now: after slow start; 1.0 for a backup
    latency: float | None  # the latency estimate in seconds (peak_ewma), else None
    measured: bool  # peak_ewma: a request to it has finished (else its estimate is a guess)


class Balancer(Protocol):
    """A load balancer over a pool of hosts. Not thread-safe: one owner (an event loop)."""

    def update(self, hosts: Sequence[Host], now: float) -> None:
        """Replace the pool. Keeps per-host state for hosts that stay (matched by id) and
        drops it for hosts that leave. Raises `BalanceError` (nothing changed) if two
        hosts share an id or an item is not a `Host`."""

    def pick(
        self, now: float, *, key: str | bytes | None = None, exclude: Collection[str] = ()
    ) -> Host | None:
        """A host for one request, None if the pool is empty or every host is excluded.

        `exclude` holds ids to avoid (hosts this request already tried, ejected or
        open-circuit hosts). `key` is the hash key of the consistent-hash policies (the
        others ignore it); a hash policy with key None picks at random. On a hash policy
        an excluded owner falls through to the next host on the ring / the next Maglev
        preference of the key, deterministically. `pick` does not count the request:
        call `started` when it is sent."""

    def started(self, host_id: str, now: float) -> None:
        """A request to `host_id` began (one more outstanding)."""

    def finished(self, host_id: str, now: float, latency: float, ok: bool) -> None:
        """A request to `host_id` ended after `latency` seconds (>= 0), `ok` or not.
        Unknown ids (a host that left) are ignored."""

    def load(self, host_id: str, now: float) -> HostLoad | None:
        """What the balancer knows of `host_id` at `now`; None if it is not in the pool."""

    @property
    def hosts(self) -> Sequence[Host]:
        """The current pool, in the order `update` was given it."""
        ...
