"""The lease table: which leases exist, which keys hang on each, and when each expires.

Theory of operation (DESIGN.md decision 3). A lease has three kinds of state:

- Replicated (changed only by `KeyValueStore.apply`, identical on every member, kept in
  snapshots): its id, granted TTL, attached keys and the last checkpointed remaining TTL.
  The store calls `grant`, `revoke`, `attach`, `detach` and `checkpoint`.
- Member-local, on every member: the *deadline*, when the lease's TTL runs out by this
  member's own clock. Applying a grant sets it to ``now + ttl``, applying a checkpoint
  of ``remaining`` seconds to ``now + remaining`` (``now`` is the apply time), a
  keep-alive on the leader to ``now + ttl``. Not replicated and not in snapshots: a
  member that restarts or restores a snapshot re-derives it as it applies (later, never
  earlier, than the truth).
- Leader-local: the *expiry* instant, when the leader revokes. Only a *primary* table
  (the leader's) has expiries; a follower's leases never expire. The node calls
  `promote(now, extend)` on becoming leader, `demote()` on losing it, `keepalive` for each
  client keep-alive, and `expired(now)` to find leases to revoke (through a LeaseRevoke
  command, after re-checking leadership).

Keep-alives do not go through the log; instead the leader reports, every election
timeout, the remaining TTL of each lease kept alive since its last report
(`checkpoints`, proposed as one `LeaseCheckpoints` entry). So every member's deadline of
a lease trails the leader's by at most one report. On promote every lease expires at
``max(deadline, now) + extend`` -- ``extend`` is an election timeout, for holders that
could not reach anyone during the election -- so:

- a failover never expires a live lease: its holder renews every TTL/3, so its deadline
  on the new leader is at least 2/3 TTL minus one report ahead of its last renewal, and
  it gets ``extend`` after the election on top;
- repeated elections cannot keep a dead lease alive: its deadline does not move when
  leadership does, so it is gone within TTL + 2 election timeouts of its last renewal
  however often leadership moves (a new leader at most adds ``extend`` once past the
  deadline, and revokes if it holds office that long).

Never: read a clock (time is ``now``), replicate expiries, or expire on a follower.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .commands import LeaseCheckpoint
from .errors import LeaseExists, LeaseNotFound, NotPrimary


@dataclass(slots=True)
class _Lease:
    id: int
    ttl: int
    checkpoint: float | None = None  # replicated: remaining TTL at the last checkpoint
    deadline: float | None = None  # member-local: None until a grant/checkpoint applied
    expiry: float | None = None  # leader-local: None on a follower
    keys: set[bytes] = field(default_factory=set)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseState:
    """The replicated part of one lease, as a snapshot holds it."""

    id: int
    ttl: int
    checkpoint: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseTimeToLive:
    """Answer to `time_to_live`: the granted TTL, what remains now, and the attached keys."""

    id: int
    granted_ttl: int
    remaining: float
    keys: tuple[bytes, ...]


class LeaseTable:
    """All leases of one store; see the module docstring for who may call what."""

    def __init__(self) -> None:
        self._leases: dict[int, _Lease] = {}
        self._primary = False
        self._renewed: set[int] = set()  # leader-local: kept alive since the last report

    # --- queries -------------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self._primary

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def ids(self) -> list[int]:
        return sorted(self._leases)

    def keys_of(self, lease_id: int) -> frozenset[bytes]:
        return frozenset(self._get(lease_id).keys)

    def states(self) -> list[LeaseState]:
        """The replicated state of every lease, by id (for snapshots)."""
        return [
            LeaseState(id=lease.id, ttl=lease.ttl, checkpoint=lease.checkpoint)
            for lease in sorted(self._leases.values(), key=lambda lease: lease.id)
        ]

    def time_to_live(self, lease_id: int, now: float) -> LeaseTimeToLive:
        lease = self._get(lease_id)
        if lease.expiry is not None:
            remaining = max(0.0, lease.expiry - now)
        else:
            remaining = float(lease.checkpoint if lease.checkpoint is not None else lease.ttl)
        return LeaseTimeToLive(
            id=lease.id, granted_ttl=lease.ttl, remaining=remaining, keys=tuple(sorted(lease.keys))
        )

    def expired(self, now: float) -> list[int]:
        """Ids of leases whose expiry is at or before ``now``, soonest first (ties by id).

        Empty on a non-primary table. The caller revokes them through the log and may
        spread a mass expiry over time by taking only a prefix of the list.
        """
        due = [
            (lease.expiry, lease.id)
            for lease in self._leases.values()
            if lease.expiry is not None and lease.expiry <= now
        ]
        return [lease_id for _, lease_id in sorted(due)]

    def checkpoints(self, now: float) -> list[LeaseCheckpoint]:
        """The remaining TTL of every lease kept alive since the last call, by id, for the
        leader to report through the log (see the module docstring); forgets them.

        Only a primary table has keep-alives to report; otherwise the list is empty.
        """
        if not self._primary:
            return []
        out = []
        for lease_id in sorted(self._renewed):
            lease = self._leases.get(lease_id)
            if lease is None or lease.deadline is None or lease.deadline <= now:
                continue
            out.append(LeaseCheckpoint(id=lease_id, remaining_seconds=lease.deadline - now))
        self._renewed.clear()
        return out

    # --- replicated mutations: called only from KeyValueStore.apply ---------------------

    def grant(self, lease_id: int, ttl: int, now: float) -> None:
        if lease_id in self._leases:
            raise LeaseExists(lease_id)
        expiry = now + ttl if self._primary else None
        self._leases[lease_id] = _Lease(id=lease_id, ttl=ttl, deadline=now + ttl, expiry=expiry)

    def revoke(self, lease_id: int) -> None:
        self._get(lease_id)
        del self._leases[lease_id]
        self._renewed.discard(lease_id)

    def attach(self, lease_id: int, key: bytes) -> None:
        self._get(lease_id).keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    def checkpoint(self, lease_id: int, remaining: float, now: float) -> None:
        """Record the remaining TTL the leader reported (applied at ``now``).

        The primary keeps its own deadline: a keep-alive may have come after the report.
        """
        lease = self._get(lease_id)
        lease.checkpoint = remaining
        if not self._primary:
            lease.deadline = now + remaining

    def restore(self, states: list[LeaseState]) -> None:
        """Replace every lease with ``states`` (keys are re-attached by the store)."""
        self._leases = {s.id: _Lease(id=s.id, ttl=s.ttl, checkpoint=s.checkpoint) for s in states}
        self._primary = False
        self._renewed.clear()

    # --- leader-local: called by the node, never through the log ------------------------

    def keepalive(self, lease_id: int, now: float) -> int:
        """Restart the lease's full TTL from ``now``; returns the TTL. Leader only."""
        lease = self._get(lease_id)
        if not self._primary:
            raise NotPrimary()
        lease.expiry = lease.deadline = now + lease.ttl
        self._renewed.add(lease_id)
        return lease.ttl

    def promote(self, now: float, extend: float) -> None:
        """Become the primary: every lease expires at ``max(deadline, now) + extend``.

        A lease with no deadline yet (restored from a snapshot) counts from ``now`` with
        its checkpointed remaining TTL, or its full TTL.
        """
        self._primary = True
        self._renewed.clear()
        for lease in self._leases.values():
            if lease.deadline is None:
                base = lease.checkpoint if lease.checkpoint is not None else lease.ttl
                lease.deadline = now + base
            lease.expiry = max(lease.deadline, now) + extend

    def demote(self) -> None:
        """Stop being primary: forget every expiry (a follower never expires leases)."""
        self._primary = False
        self._renewed.clear()
        for lease in self._leases.values():
            lease.expiry = None

    def _get(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(lease_id)
        return lease
