"""The lease table: which leases exist, which keys hang on each, and when each expires.

Theory of operation (DESIGN.md decision 3). A lease has two kinds of state:

- Replicated (changed only by `KeyValueStore.apply`, identical on every member, kept in
  snapshots): its id, granted TTL, attached keys and the last checkpointed remaining TTL.
  The store calls `grant`, `revoke`, `attach`, `detach` and `checkpoint`.
- Leader-local (in memory, never replicated): the expiry instant. Only a *primary* table
  (the leader's) has expiries; a follower's leases never expire. The node calls
  `promote(now, extend)` on becoming leader, `demote()` on losing it, `keepalive` for each
  client keep-alive, and `expired(now)` to find leases to revoke (through a LeaseRevoke
  command, after re-checking leadership).

On promote every lease gets its full TTL (or its checkpointed remaining TTL, so repeated
elections cannot keep a dead lease alive for ever) plus ``extend`` -- an election timeout
-- so a failover never expires the registry. A keep-alive restarts the full TTL and
forgets the checkpoint locally; `checkpoints` gives the commands the leader proposes to
record remaining TTLs (and to clear stale ones) on every member.

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

    def checkpointed(self, lease_id: int) -> bool:
        """Whether a remaining TTL was recorded through the log for this lease."""
        return self._get(lease_id).checkpoint is not None

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

    def checkpoints(self, now: float, min_ttl: int = 0) -> list[LeaseCheckpoint]:
        """Commands recording the remaining TTL of every lease with ``ttl >= min_ttl``.

        Only a primary table has remaining TTLs to record; otherwise the list is empty.
        """
        if not self._primary:
            return []
        out = []
        for lease in sorted(self._leases.values(), key=lambda lease: lease.id):
            if lease.ttl < min_ttl or lease.expiry is None or lease.expiry <= now:
                continue
            out.append(LeaseCheckpoint(id=lease.id, remaining_seconds=lease.expiry - now))
        return out

    # --- replicated mutations: called only from KeyValueStore.apply ---------------------

    def grant(self, lease_id: int, ttl: int, now: float) -> None:
        if lease_id in self._leases:
            raise LeaseExists(lease_id)
        expiry = now + ttl if self._primary else None
        self._leases[lease_id] = _Lease(id=lease_id, ttl=ttl, expiry=expiry)

    def revoke(self, lease_id: int) -> None:
        self._get(lease_id)
        del self._leases[lease_id]

    def attach(self, lease_id: int, key: bytes) -> None:
        self._get(lease_id).keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    def checkpoint(self, lease_id: int, remaining: float) -> None:
        self._get(lease_id).checkpoint = remaining

    def restore(self, states: list[LeaseState]) -> None:
        """Replace every lease with ``states`` (keys are re-attached by the store)."""
        self._leases = {s.id: _Lease(id=s.id, ttl=s.ttl, checkpoint=s.checkpoint) for s in states}
        self._primary = False

    # --- leader-local: called by the node, never through the log ------------------------

    def keepalive(self, lease_id: int, now: float) -> int:
        """Restart the lease's full TTL from ``now``; returns the TTL. Leader only."""
        lease = self._get(lease_id)
        if not self._primary:
            raise NotPrimary()
        lease.expiry = now + lease.ttl
        lease.checkpoint = None
        return lease.ttl

    def promote(self, now: float, extend: float) -> None:
        """Become the primary: every lease expires after its (checkpointed) TTL + extend."""
        self._primary = True
        for lease in self._leases.values():
            base = lease.checkpoint if lease.checkpoint is not None else lease.ttl
            lease.expiry = now + base + extend

    def demote(self) -> None:
        """Stop being primary: forget every expiry (a follower never expires leases)."""
        self._primary = False
        for lease in self._leases.values():
            lease.expiry = None

    def _get(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(lease_id)
        return lease
