"""The values the KV state machine hands out: key-values, events and apply results.

Theory of operation: everything here is an immutable record, so a result or an event
can be passed to many watchers and clients without copying, and a `KeyValue` handed out
at one revision never changes under the reader. ``mod_revision`` is the revision of the
write that produced a record; for a DELETE event the ``kv`` is a tombstone (empty value,
zero create revision and version) whose ``mod_revision`` is the delete's revision.

Never: hold mutable state or behaviour beyond trivial accessors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValue:
    """One key at one revision (etcd's mvccpb.KeyValue); ``lease`` 0 means no lease."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One change to one key; ``prev_kv`` is the key before the change (None if absent)."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class RangeResult(NamedTuple):
    """Keys of a range sorted by key: at most ``limit`` of them, whether more exist, and
    how many matched in all. A tuple, so ``kvs, more, count = store.range(...)`` works."""

    kvs: tuple[KeyValue, ...]
    more: bool
    count: int  # type: ignore[assignment]  # etcd's name; shadows tuple.count on purpose


@dataclass(frozen=True, slots=True, kw_only=True)
class PutResult:
    revision: int
    prev: KeyValue | None = None  # only when the Put asked for prev_kv


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: tuple[KeyValue, ...] = ()  # only when the Delete asked for prev_kv


TxnResponse = PutResult | DeleteResult | RangeResult


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: tuple[TxnResponse, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseGrantResult:
    id: int
    ttl: int
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRevokeResult:
    revision: int
    deleted: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseCheckpointResult:
    id: int
    remaining_seconds: float
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseCheckpointsResult:
    recorded: int  # how many of the checkpoints named a lease that still exists
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactResult:
    revision: int
    compacted_revision: int


Result = (
    PutResult
    | DeleteResult
    | TxnResult
    | LeaseGrantResult
    | LeaseRevokeResult
    | LeaseCheckpointResult
    | LeaseCheckpointsResult
    | CompactResult
)
