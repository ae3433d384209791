"""The revisioned key space: the state machine every control-plane member applies.

Theory of operation (etcd's MVCC model):

- A global ``revision`` starts at 1 with no keys. Each *write* -- a Put, a Delete that
  removes something, a Txn whose chosen branch writes, a LeaseRevoke with attached keys --
  advances it by exactly one, however many keys it touches; every change in it carries
  that revision. Reads, empty deletes, grants, checkpoints and compactions do not.
- Each live key has ``create_revision``, ``mod_revision``, ``version`` (puts since it was
  created; a delete ends the key, and a later put starts again at 1) and ``lease``.
- History: per key, a list of ``(revision, KeyValue | None)`` (None = deleted), plus a
  global event log in revision order. ``compact(C)`` keeps, per key, only what is needed
  to read at revisions ``>= C``, and drops events at revisions ``<= C``. So the oldest
  readable state is C, and a watch may start at ``C + 1`` (list at C, then watch from
  C + 1): asking for less raises `Compacted`.
- `apply(command, now)` is the one entry point for mutation. It validates everything the
  command needs (leases exist, revisions in range) before the first change, so a raised
  error leaves the store untouched; a Txn is atomic and lands in one revision.

Never: do I/O, read a clock (``now`` is passed in, and only lease expiry uses it) or
mutate state outside `apply` -- except the leader-local lease calls on ``self.leases``.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from typing import Any

from .commands import (
    Command,
    Compact,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    LeaseCheckpoint,
    LeaseCheckpoints,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    Txn,
)
from .errors import Compacted, FutureRevision, InvalidCommand, LeaseNotFound, SnapshotCorrupt
from .keys import TO_END
from .leases import LeaseState, LeaseTable
from .types import (
    CompactResult,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    LeaseCheckpointResult,
    LeaseCheckpointsResult,
    LeaseGrantResult,
    LeaseRevokeResult,
    PutResult,
    RangeResult,
    Result,
    TxnResponse,
    TxnResult,
)

_COMPARE_OPS: dict[CompareOp, Callable[[Any, Any], Any]] = {
    CompareOp.EQ: operator.eq,
    CompareOp.NE: operator.ne,
    CompareOp.LT: operator.lt,
    CompareOp.GT: operator.gt,
}

_History = list[tuple[int, KeyValue | None]]


def _rev_of(entry: tuple[int, KeyValue | None]) -> int:
    return entry[0]


def _event_rev(event: Event) -> int:
    return event.revision


class KeyValueStore:
    """The KV state machine: revisioned keys, MVCC history, events and the lease table."""

    def __init__(self) -> None:
        self._revision = 1
        self._compacted = 0
        self._live: dict[bytes, KeyValue] = {}
        self._history: dict[bytes, _History] = {}
        self._keys: list[bytes] = []  # sorted keys of _history: live ones and deleted ones
        self._events: list[Event] = []
        self.leases = LeaseTable()

    @classmethod
    def restored(
        cls, *, revision: int, kvs: Iterable[KeyValue], leases: Iterable[LeaseState]
    ) -> KeyValueStore:
        """A store whose state at ``revision`` is ``kvs``, with history compacted to it."""
        store = cls()
        store._revision = store._compacted = revision
        store.leases.restore(list(leases))
        for kv in kvs:
            if kv.key in store._live or not 0 < kv.create_revision <= kv.mod_revision <= revision:
                raise SnapshotCorrupt(f"key {kv.key!r} is duplicated or has bad revisions")
            if kv.lease and kv.lease not in store.leases:
                raise SnapshotCorrupt(f"key {kv.key!r} names missing lease {kv.lease}")
            store._live[kv.key] = kv
            store._history[kv.key] = [(kv.mod_revision, kv)]
            if kv.lease:
                store.leases.attach(kv.lease, kv.key)
        store._keys = sorted(store._live)
        return store

    # --- reads -------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    def get(self, key: bytes, revision: int | None = None) -> KeyValue | None:
        """``key`` as of ``revision`` (default: now), or None if it did not exist then."""
        rev = self._read_revision(revision)
        return self._live.get(key) if rev == self._revision else self._at(key, rev)

    def range(
        self,
        key: bytes,
        range_end: bytes | None = None,
        limit: int = 0,
        revision: int | None = None,
    ) -> RangeResult:
        """The keys in ``[key, range_end)`` (see `keys.py`) as of ``revision``, by key."""
        rev = self._read_revision(revision)
        if rev == self._revision:
            found = [self._live[k] for k in self._keys_in(key, range_end) if k in self._live]
        else:
            found = [kv for k in self._keys_in(key, range_end) if (kv := self._at(k, rev))]
        count = len(found)
        if limit and count > limit:
            return RangeResult(tuple(found[:limit]), True, count)
        return RangeResult(tuple(found), False, count)

    def events(self, start_revision: int) -> list[Event]:
        """Every event at ``start_revision`` or later, in revision order."""
        if start_revision < 1:
            raise InvalidCommand(f"start_revision must be >= 1, got {start_revision}")
        if start_revision <= self._compacted:
            raise Compacted(start_revision, self._compacted)
        return self._events[bisect_left(self._events, start_revision, key=_event_rev) :]

    def _read_revision(self, revision: int | None) -> int:
        if revision is None:
            return self._revision
        if revision < 1:
            raise InvalidCommand(f"revision must be >= 1, got {revision}")
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)
        return revision

    def _at(self, key: bytes, revision: int) -> KeyValue | None:
        history = self._history.get(key)
        if not history:
            return None
        i = bisect_right(history, revision, key=_rev_of)
        return history[i - 1][1] if i else None

    def _keys_in(self, key: bytes, range_end: bytes | None) -> list[bytes]:
        if range_end is None:
            return [key] if key in self._history else []
        lo = bisect_left(self._keys, key)
        hi = len(self._keys) if range_end == TO_END else bisect_left(self._keys, range_end)
        return self._keys[lo:hi]

    def _live_in(self, key: bytes, range_end: bytes | None) -> list[bytes]:
        return [k for k in self._keys_in(key, range_end) if k in self._live]

    # --- the one mutation entry point --------------------------------------------------

    def apply(self, command: Command, now: float) -> Result:
        """Apply one committed command; raises a `KvError` (changing nothing) if it cannot."""
        match command:
            case Put():
                return self._apply_put(command)
            case Delete():
                return self._apply_delete(command)
            case Txn():
                return self._apply_txn(command)
            case LeaseGrant():
                self.leases.grant(command.id, command.ttl_seconds, now)
                return LeaseGrantResult(
                    id=command.id, ttl=command.ttl_seconds, revision=self._revision
                )
            case LeaseRevoke():
                return self._apply_lease_revoke(command)
            case LeaseCheckpoint():
                self.leases.checkpoint(command.id, command.remaining_seconds, now)
                return LeaseCheckpointResult(
                    id=command.id,
                    remaining_seconds=command.remaining_seconds,
                    revision=self._revision,
                )
            case LeaseCheckpoints():
                recorded = 0
                for c in command.checkpoints:
                    if c.id in self.leases:
                        self.leases.checkpoint(c.id, c.remaining_seconds, now)
                        recorded += 1
                return LeaseCheckpointsResult(recorded=recorded, revision=self._revision)
            case Compact():
                return self._apply_compact(command)
        raise InvalidCommand(f"not a KV command: {command!r}")

    def _apply_put(self, put: Put) -> PutResult:
        if put.lease and put.lease not in self.leases:
            raise LeaseNotFound(put.lease)
        self._revision += 1
        prev = self._put(put, self._revision)
        return PutResult(revision=self._revision, prev=prev if put.prev_kv else None)

    def _apply_delete(self, delete: Delete) -> DeleteResult:
        if not self._live_in(delete.key, delete.range_end):
            return DeleteResult(revision=self._revision, deleted=0)
        self._revision += 1
        prevs = self._delete(delete.key, delete.range_end, self._revision)
        return DeleteResult(
            revision=self._revision,
            deleted=len(prevs),
            prev_kvs=tuple(prevs) if delete.prev_kv else (),
        )

    def _apply_txn(self, txn: Txn) -> TxnResult:
        succeeded = all(self._compare(c) for c in txn.compares)
        ops = txn.success if succeeded else txn.failure
        # Check everything first: once the first op has run, nothing may fail.
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self.leases:
                raise LeaseNotFound(op.lease)
        writes = any(
            isinstance(op, Put) or (isinstance(op, Delete) and self._live_in(op.key, op.range_end))
            for op in ops
        )
        rev = self._revision + 1 if writes else self._revision
        responses: list[TxnResponse] = []
        for op in ops:
            if isinstance(op, Put):
                prev = self._put(op, rev)
                responses.append(PutResult(revision=rev, prev=prev if op.prev_kv else None))
            elif isinstance(op, Delete):
                prevs = self._delete(op.key, op.range_end, rev)
                prev_kvs = tuple(prevs) if op.prev_kv else ()
                responses.append(DeleteResult(revision=rev, deleted=len(prevs), prev_kvs=prev_kvs))
            else:
                responses.append(self._range_live(op))
        self._revision = rev
        return TxnResult(succeeded=succeeded, revision=rev, responses=tuple(responses))

    def _apply_lease_revoke(self, revoke: LeaseRevoke) -> LeaseRevokeResult:
        keys = sorted(self.leases.keys_of(revoke.id))  # raises LeaseNotFound first
        if keys:
            self._revision += 1
            for key in keys:
                self._delete(key, None, self._revision)
        self.leases.revoke(revoke.id)
        return LeaseRevokeResult(revision=self._revision, deleted=tuple(keys))

    def _apply_compact(self, compact: Compact) -> CompactResult:
        target = compact.revision
        if target <= self._compacted:
            raise Compacted(target, self._compacted)
        if target > self._revision:
            raise FutureRevision(target, self._revision)
        for key, history in list(self._history.items()):
            i = bisect_right(history, target, key=_rev_of)
            # Keep the newest entry at or below the target if it is a live value: reads at
            # the target need it. A tombstone there reads the same as no entry at all.
            keep = i - 1 if i and history[i - 1][1] is not None else i
            del history[:keep]
            if not history:
                del self._history[key]
        self._keys = [k for k in self._keys if k in self._history]
        del self._events[: bisect_right(self._events, target, key=_event_rev)]
        self._compacted = target
        return CompactResult(revision=self._revision, compacted_revision=target)

    # --- write primitives: callers have validated and chosen the revision -------------

    def _put(self, put: Put, rev: int) -> KeyValue | None:
        prev = self._live.get(put.key)
        if prev is None:
            create, version = rev, 1
        else:
            create, version = prev.create_revision, prev.version + 1
            if prev.lease and prev.lease != put.lease:
                self.leases.detach(prev.lease, put.key)
        kv = KeyValue(
            key=put.key,
            value=put.value,
            create_revision=create,
            mod_revision=rev,
            version=version,
            lease=put.lease,
        )
        if put.lease:
            self.leases.attach(put.lease, put.key)
        self._live[put.key] = kv
        self._record(put.key, rev, kv)
        self._events.append(Event(type=EventType.PUT, kv=kv, prev_kv=prev))
        return prev

    def _delete(self, key: bytes, range_end: bytes | None, rev: int) -> list[KeyValue]:
        prevs = []
        for k in self._live_in(key, range_end):
            prev = self._live.pop(k)
            if prev.lease:
                self.leases.detach(prev.lease, k)
            tomb = KeyValue(key=k, value=b"", create_revision=0, mod_revision=rev, version=0)
            self._record(k, rev, None)
            self._events.append(Event(type=EventType.DELETE, kv=tomb, prev_kv=prev))
            prevs.append(prev)
        return prevs

    def _record(self, key: bytes, rev: int, kv: KeyValue | None) -> None:
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = []
            insort(self._keys, key)
        history.append((rev, kv))

    def _range_live(self, op: Range) -> RangeResult:
        found = [self._live[k] for k in self._live_in(op.key, op.range_end)]
        if op.limit and len(found) > op.limit:
            return RangeResult(tuple(found[: op.limit]), True, len(found))
        return RangeResult(tuple(found), False, len(found))

    def _compare(self, compare: Compare) -> bool:
        kv = self._live.get(compare.key)
        target = compare.target
        actual: object
        if target is CompareTarget.EXISTS:
            actual = kv is not None
        elif target is CompareTarget.VALUE:
            if kv is None:
                return False  # as in etcd: a value compare on a missing key never holds
            actual = kv.value
        else:
            actual = getattr(kv, target.value) if kv is not None else 0
        return bool(_COMPARE_OPS[compare.op](actual, compare.value))
