"""The control plane's replicated state machine: pure, applied identically on every member.

`KeyValueStore.apply(command, now)` is the one mutation entry point (`store.py`); the
commands are in `commands.py`, leases in `leases.py`, watch events in `watch.py` and
snapshots in `snapshot.py`. Nothing in this package does I/O, reads a clock or uses
global randomness: time arrives as ``now`` in seconds.
"""

from .commands import (
    MAX_KEY_BYTES,
    MAX_LEASE_TTL_SECONDS,
    MAX_TXN_OPS,
    MAX_VALUE_BYTES,
    Command,
    Compact,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    Txn,
    TxnOp,
)
from .errors import (
    Compacted,
    FutureRevision,
    InvalidCommand,
    KvError,
    LeaseExists,
    LeaseNotFound,
    LimitExceeded,
    NotPrimary,
    SnapshotCorrupt,
)
from .keys import TO_END, in_range, prefix_end
from .leases import LeaseState, LeaseTable, LeaseTimeToLive
from .snapshot import restore, snapshot
from .store import KeyValueStore
from .types import (
    CompactResult,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    LeaseCheckpointResult,
    LeaseGrantResult,
    LeaseRevokeResult,
    PutResult,
    RangeResult,
    Result,
    TxnResponse,
    TxnResult,
)
from .watch import WatchFilter, events_since

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_LEASE_TTL_SECONDS",
    "MAX_TXN_OPS",
    "MAX_VALUE_BYTES",
    "TO_END",
    "Command",
    "Compact",
    "CompactResult",
    "Compacted",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteResult",
    "Event",
    "EventType",
    "FutureRevision",
    "InvalidCommand",
    "KeyValue",
    "KeyValueStore",
    "KvError",
    "LeaseCheckpoint",
    "LeaseCheckpointResult",
    "LeaseExists",
    "LeaseGrant",
    "LeaseGrantResult",
    "LeaseNotFound",
    "LeaseRevoke",
    "LeaseRevokeResult",
    "LeaseState",
    "LeaseTable",
    "LeaseTimeToLive",
    "LimitExceeded",
    "NotPrimary",
    "Put",
    "PutResult",
    "Range",
    "RangeResult",
    "Result",
    "SnapshotCorrupt",
    "Txn",
    "TxnOp",
    "TxnResponse",
    "TxnResult",
    "WatchFilter",
    "events_since",
    "in_range",
    "prefix_end",
    "restore",
    "snapshot",
]
