"""`Pool`: the one `Balancer` implementation, a policy's pickers behind tiers and zones.

Theory of operation. The pool owns one `HostState` per host id and splits the hosts,
on every `update`, into

1. tiers: hosts of positive weight first, then the weight-0 "backup" hosts (picked only
   when no positive-weight host is available, as if they all weighed 1);
2. within a tier, when zone-aware, the local zone and the rest (zone.py decides how
   often the local side is asked first).

Each part has its own picker of the configured policy (picker.py); `pick` asks the
parts in order until one returns a host. Everything a request changes (outstanding
count, latency estimate, smooth-WRR current weight) lives on the shared `HostState`, so
it does not matter which part a host is in, and it carries across `update` for every
id that stays. What a picker keeps itself (the round-robin cursor, EDF deadlines, ring
points, Maglev permutations) is kept by id while a host stays in the same part; a host
that changes part (its weight becomes 0, its zone changes) starts afresh there.

Rules it keeps:

* `update` validates the whole pool before it changes anything (unique ids, `Host`
  items, a pool that fits the policy), so a bad pool leaves the old one in force.
* `pick` does no rebuild, except the slow-start re-weigh: while a host is ramping, a
  pick at or past the next step re-weighs the pool (O(n), RAMP_STEPS times per ramp).
* `pick` on a hash policy hashes the key once, whichever parts it asks.
* `finished` rejects a latency that is negative or not finite (a caller's clock bug;
  it would poison the estimate) before anything else, and ignores unknown ids.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence

from .errors import BalanceError
from .hashing import fraction, key_point
from .host import Host, HostLoad
from .peak_ewma import LatencyModel
from .picker import Picker
from .slow_start import SlowStart
from .state import HostState
from .zone import ZonePreference

INFINITY = math.inf


class _Tier:
    """The hosts of one weight tier, split into local zone and the rest if zone-aware."""

    __slots__ = ("_local", "_other", "_p_local", "_rng", "_zone", "members")

    def __init__(
        self, make: Callable[[], Picker], zone: ZonePreference | None, rng: random.Random
    ) -> None:
        self._zone = zone
        self._rng = rng
        self._other = make()  # all hosts when not zone-aware
        self._local = make() if zone is not None else None
        self._p_local = 0.0
        self.members: tuple[HostState, ...] = ()

    def rebuild(self, members: Sequence[HostState]) -> None:
        self.members = tuple(members)
        zone = self._zone
        if zone is None or self._local is None:
            self._other.rebuild(self.members)
            return
        local = [m for m in self.members if m.host.zone == zone.local_zone]
        other = [m for m in self.members if m.host.zone != zone.local_zone]
        self._local.rebuild(local)
        self._other.rebuild(other)
        if self._other.weighted:
            local_capacity = sum(m.weight for m in local)
            total = local_capacity + sum(m.weight for m in other)
        else:
            local_capacity, total = float(len(local)), float(len(self.members))
        zones = len({m.host.zone for m in self.members})
        self._p_local = zone.local_probability(local_capacity, total, len(self.members), zones)

    def pick(self, now: float, point: int | None, exclude: Collection[str]) -> HostState | None:
        local = self._local
        if local is None:
            return self._other.pick(now, point, exclude)
        p = self._p_local
        if p >= 1.0:
            first, second = local, self._other
        elif p <= 0.0:
            first, second = self._other, local
        else:
            coin = self._rng.random() if point is None else fraction(point)
            first, second = (local, self._other) if coin < p else (self._other, local)
        found = first.pick(now, point, exclude)
        return found if found is not None else second.pick(now, point, exclude)


class Pool:
    """A `Balancer`: build one with `make_balancer`, which validates the configuration."""

    def __init__(
        self,
        *,
        policy: str,
        make_picker: Callable[[], Picker],
        rng: random.Random,
        hashed: bool = False,
        zone: ZonePreference | None = None,
        slow_start: SlowStart | None = None,
        latency: LatencyModel | None = None,
        max_hosts: int | None = None,
    ) -> None:
        self.policy = policy
        self._hashed = hashed
        self._slow_start = slow_start
        self._latency = latency
        self._max_hosts = max_hosts
        self._primary = _Tier(make_picker, zone, rng)
        self._backup = _Tier(make_picker, zone, rng)
        self._tiers: tuple[_Tier, ...] = ()
        self._hosts: tuple[Host, ...] = ()
        self._states: dict[str, HostState] = {}
        self._reweigh_at = INFINITY

    # --- the pool ---------------------------------------------------------------------

    @property
    def hosts(self) -> Sequence[Host]:
        return self._hosts

    def update(self, hosts: Sequence[Host], now: float) -> None:
        pool = tuple(hosts)
        seen: set[str] = set()
        for i, host in enumerate(pool):
            if not isinstance(host, Host):
                raise BalanceError(f"hosts[{i}]", f"must be a Host, got {type(host).__name__}")
            if host.id in seen:
                raise BalanceError(f"hosts[{i}].id", f"duplicate id {host.id!r} in the pool")
            seen.add(host.id)
        if self._max_hosts is not None and len(pool) > self._max_hosts:
            raise BalanceError(
                "hosts",
                f"{len(pool)} hosts do not fit policy {self.policy!r} "
                f"(at most {self._max_hosts}; raise its table_size)",
            )
        old = self._states
        states: dict[str, HostState] = {}
        for host in pool:
            state = old.get(host.id)
            if state is None:
                state = HostState(host, now)
            else:
                state.host = host
            states[host.id] = state
        self._hosts = pool
        self._states = states
        if self._latency is not None:
            self._latency.track(tuple(states.values()))
        self._reweigh(now)

    def _reweigh(self, now: float) -> None:
        """Effective weights at `now`, then rebuild both tiers' pickers."""
        ramp = self._slow_start
        ramping = False
        primary: list[HostState] = []
        backup: list[HostState] = []
        for state in self._states.values():
            host = state.host
            if host.weight == 0:
                state.weight = 1.0
                backup.append(state)
                continue
            weight = host.weight
            if ramp is not None:
                age = now - host.since
                ramping = ramping or age < ramp.window
                weight *= ramp.factor(age)
            state.weight = weight
            primary.append(state)
        self._primary.rebuild(primary)
        self._backup.rebuild(backup)
        self._tiers = tuple(t for t in (self._primary, self._backup) if t.members)
        self._reweigh_at = now + ramp.step if ramping and ramp is not None else INFINITY

    # --- requests ---------------------------------------------------------------------

    def pick(
        self, now: float, *, key: str | bytes | None = None, exclude: Collection[str] = ()
    ) -> Host | None:
        if now >= self._reweigh_at:
            self._reweigh(now)
        point = key_point(key) if self._hashed and key is not None else None
        for tier in self._tiers:
            found = tier.pick(now, point, exclude)
            if found is not None:
                return found.host
        return None

    def started(self, host_id: str, now: float) -> None:
        state = self._states.get(host_id)
        if state is not None:
            state.outstanding += 1

    def finished(self, host_id: str, now: float, latency: float, ok: bool) -> None:
        if not 0.0 <= latency < INFINITY:  # also false for NaN
            raise BalanceError("latency", f"must be finite and >= 0 seconds, got {latency!r}")
        state = self._states.get(host_id)
        if state is None:
            return
        if state.outstanding > 0:
            state.outstanding -= 1
        if self._latency is not None:
            self._latency.observe(state, now, latency, ok)

    def load(self, host_id: str, now: float) -> HostLoad | None:
        """What the balancer knows of `host_id` at `now`, None if it is not in the pool."""
        state = self._states.get(host_id)
        if state is None:
            return None
        estimate = self._latency.estimate(state, now) if self._latency is not None else None
        return HostLoad(
            id=state.id,
            outstanding=state.outstanding,
            weight=state.weight,
            latency=estimate,
            measured=state.measured,
        )

    def __repr__(self) -> str:
        return f"Pool(policy={self.policy!r}, hosts={len(self._hosts)})"
