"""The commands that go through Raft and are applied to the KV state machine.

Theory of operation: a client request becomes one of these frozen, slotted, keyword-only
dataclasses; the leader proposes it, and every member applies the same command through
`KeyValueStore.apply`. Each command validates itself on construction, so whatever reaches
the store is well formed; what depends on the store's state (does the lease exist? is the
revision compacted?) is checked by the store, also before anything changes.

Rules: commands are values (no behaviour beyond validation), hold bytes for keys and
values, and never read a clock -- time is the caller's `now`. Size limits are the module
constants below; breaking one raises `LimitExceeded` naming the limit and the actual size.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import InvalidCommand, LimitExceeded
from .keys import TO_END, in_range

MAX_KEY_BYTES = 1536
MAX_VALUE_BYTES = 1024 * 1024
MAX_TXN_OPS = 128
MAX_LEASE_TTL_SECONDS = 9_000_000_000  # etcd's MaxLeaseTTL


def _check_key(key: bytes, field: str = "key") -> None:
    if not isinstance(key, bytes):
        raise InvalidCommand(f"{field} must be bytes, got {type(key).__name__}")
    if not key:
        raise InvalidCommand(f"{field} must not be empty")
    if len(key) > MAX_KEY_BYTES:
        raise LimitExceeded(f"{field} size in bytes", "MAX_KEY_BYTES", MAX_KEY_BYTES, len(key))


def _check_range_end(key: bytes, range_end: bytes | None) -> None:
    if range_end is None:
        return
    if not isinstance(range_end, bytes):
        raise InvalidCommand(f"range_end must be bytes or None, got {type(range_end).__name__}")
    if len(range_end) > MAX_KEY_BYTES:
        raise LimitExceeded(
            "range_end size in bytes", "MAX_KEY_BYTES", MAX_KEY_BYTES, len(range_end)
        )
    if range_end != TO_END and range_end <= key:
        raise InvalidCommand(f"range_end {range_end!r} must be greater than key {key!r}")


def _check_id(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCommand(f"{field} must be an int, got {type(value).__name__}")
    if value < 0:
        raise InvalidCommand(f"{field} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Put:
    """Set ``key`` to ``value``; ``lease`` (0 = none) attaches the key to a lease."""

    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False

    def __post_init__(self) -> None:
        _check_key(self.key)
        if not isinstance(self.value, bytes):
            raise InvalidCommand(f"value must be bytes, got {type(self.value).__name__}")
        if len(self.value) > MAX_VALUE_BYTES:
            raise LimitExceeded(
                "value size in bytes", "MAX_VALUE_BYTES", MAX_VALUE_BYTES, len(self.value)
            )
        _check_id(self.lease, "lease")


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """Delete ``key``, or every key in ``[key, range_end)`` (see `keys.py` for the rules)."""

    key: bytes
    range_end: bytes | None = None
    prev_kv: bool = False

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_range_end(self.key, self.range_end)


@dataclass(frozen=True, slots=True, kw_only=True)
class Range:
    """A read inside a `Txn`: the keys in the range at the txn's revision (limit 0 = all)."""

    key: bytes
    range_end: bytes | None = None
    limit: int = 0

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_range_end(self.key, self.range_end)
        _check_id(self.limit, "limit")


class CompareTarget(enum.Enum):
    """What of a key a `Compare` looks at."""

    VALUE = "value"
    VERSION = "version"
    CREATE_REVISION = "create_revision"
    MOD_REVISION = "mod_revision"
    LEASE = "lease"
    EXISTS = "exists"


class CompareOp(enum.Enum):
    EQ = "=="
    NE = "!="
    LT = "<"
    GT = ">"


@dataclass(frozen=True, slots=True, kw_only=True)
class Compare:
    """One guard of a `Txn`: ``<target of key> <op> <value>``.

    VALUE compares bytes; VERSION, CREATE_REVISION, MOD_REVISION and LEASE compare ints (a
    missing key has 0 for each, as in etcd, and a VALUE compare on it is false); EXISTS
    takes a bool and only EQ/NE.
    """

    key: bytes
    target: CompareTarget
    op: CompareOp
    value: bytes | int | bool

    def __post_init__(self) -> None:
        _check_key(self.key)
        if not isinstance(self.target, CompareTarget):
            raise InvalidCommand(f"compare target must be a CompareTarget, got {self.target!r}")
        if not isinstance(self.op, CompareOp):
            raise InvalidCommand(f"compare op must be a CompareOp, got {self.op!r}")
        if self.target is CompareTarget.VALUE:
            if not isinstance(self.value, bytes):
                raise InvalidCommand(
                    f"compare on value needs bytes, got {type(self.value).__name__}"
                )
        elif self.target is CompareTarget.EXISTS:
            if not isinstance(self.value, bool):
                raise InvalidCommand(
                    f"compare on exists needs a bool, got {type(self.value).__name__}"
                )
            if self.op not in (CompareOp.EQ, CompareOp.NE):
                raise InvalidCommand(
                    f"compare on exists allows only == and !=, got {self.op.value}"
                )
        elif isinstance(self.value, bool) or not isinstance(self.value, int):
            raise InvalidCommand(
                f"compare on {self.target.value} needs an int, got {type(self.value).__name__}"
            )


TxnOp = Put | Delete | Range


def _check_ops(ops: tuple[TxnOp, ...], branch: str) -> None:
    if not isinstance(ops, tuple):
        raise InvalidCommand(f"txn {branch} must be a tuple, got {type(ops).__name__}")
    if len(ops) > MAX_TXN_OPS:
        raise LimitExceeded(f"txn {branch} op count", "MAX_TXN_OPS", MAX_TXN_OPS, len(ops))
    put_keys: set[bytes] = set()
    deletes: list[Delete] = []
    for op in ops:
        if isinstance(op, Put):
            if op.key in put_keys:
                raise InvalidCommand(f"txn {branch} puts key {op.key!r} more than once")
            put_keys.add(op.key)
        elif isinstance(op, Delete):
            deletes.append(op)
        elif not isinstance(op, Range):
            raise InvalidCommand(f"txn {branch} op must be Put, Delete or Range, got {op!r}")
    # One revision holds at most one change per key, so a put may not meet a delete.
    for d in deletes:
        for key in put_keys:
            if in_range(key, d.key, d.range_end):
                raise InvalidCommand(
                    f"txn {branch} both puts and deletes key {key!r} in one revision"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class Txn:
    """If every compare holds, apply ``success``, else ``failure``; atomically, one revision."""

    compares: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.compares, tuple):
            kind = type(self.compares).__name__
            raise InvalidCommand(f"txn compares must be a tuple, got {kind}")
        if len(self.compares) > MAX_TXN_OPS:
            raise LimitExceeded("txn compare count", "MAX_TXN_OPS", MAX_TXN_OPS, len(self.compares))
        for c in self.compares:
            if not isinstance(c, Compare):
                raise InvalidCommand(f"txn compare must be a Compare, got {c!r}")
        _check_ops(self.success, "success")
        _check_ops(self.failure, "failure")


def _check_lease_id(lease_id: int) -> None:
    _check_id(lease_id, "lease id")
    if lease_id == 0:
        raise InvalidCommand("lease id must be > 0 (0 means no lease)")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseGrant:
    """Grant lease ``id`` (chosen by the leader, unique) for ``ttl_seconds``."""

    id: int
    ttl_seconds: int

    def __post_init__(self) -> None:
        _check_lease_id(self.id)
        if isinstance(self.ttl_seconds, bool) or not isinstance(self.ttl_seconds, int):
            kind = type(self.ttl_seconds).__name__
            raise InvalidCommand(f"ttl_seconds must be an int, got {kind}")
        if self.ttl_seconds <= 0:
            raise InvalidCommand(f"ttl_seconds must be > 0, got {self.ttl_seconds}")
        if self.ttl_seconds > MAX_LEASE_TTL_SECONDS:
            raise LimitExceeded(
                "ttl_seconds", "MAX_LEASE_TTL_SECONDS", MAX_LEASE_TTL_SECONDS, self.ttl_seconds
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRevoke:
    """Revoke lease ``id`` and delete every key attached to it, in one revision."""

    id: int

    def __post_init__(self) -> None:
        _check_lease_id(self.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseCheckpoint:
    """Record a lease's remaining TTL so a new leader does not restart it from full."""

    id: int
    remaining_seconds: float

    def __post_init__(self) -> None:
        _check_lease_id(self.id)
        if isinstance(self.remaining_seconds, bool) or not isinstance(
            self.remaining_seconds, int | float
        ):
            raise InvalidCommand(
                f"remaining_seconds must be a number, got {type(self.remaining_seconds).__name__}"
            )
        if not self.remaining_seconds > 0:
            raise InvalidCommand(f"remaining_seconds must be > 0, got {self.remaining_seconds}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseCheckpoints:
    """Many `LeaseCheckpoint`s in one log entry: the leader's periodic report of the
    remaining TTLs of the leases kept alive since its last report. A lease revoked in
    the meantime is skipped, not an error (the same on every member)."""

    checkpoints: tuple[LeaseCheckpoint, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoints, tuple):
            kind = type(self.checkpoints).__name__
            raise InvalidCommand(f"checkpoints must be a tuple, got {kind}")
        for c in self.checkpoints:
            if not isinstance(c, LeaseCheckpoint):
                raise InvalidCommand(f"checkpoint must be a LeaseCheckpoint, got {c!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Compact:
    """Drop history older than ``revision``; reads below it raise `Compacted` afterwards."""

    revision: int

    def __post_init__(self) -> None:
        _check_id(self.revision, "revision")
        if self.revision == 0:
            raise InvalidCommand("revision must be >= 1, got 0")


Command = (
    Put | Delete | Txn | LeaseGrant | LeaseRevoke | LeaseCheckpoint | LeaseCheckpoints | Compact
)
