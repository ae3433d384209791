"""The public surface of shoal.kv is pinned: changing it is a deliberate act."""

from __future__ import annotations

import shoal.kv

EXPECTED = {
    "MAX_KEY_BYTES", "MAX_LEASE_TTL_SECONDS", "MAX_TXN_OPS", "MAX_VALUE_BYTES", "TO_END",
    "Command", "Compact", "CompactResult", "Compacted", "Compare", "CompareOp",
    "CompareTarget", "Delete", "DeleteResult", "Event", "EventType", "FutureRevision",
    "InvalidCommand", "KeyValue", "KeyValueStore", "KvError", "LeaseCheckpoint",
    "LeaseCheckpointResult",
    "LeaseCheckpoints",
    "LeaseCheckpointsResult", "LeaseExists", "LeaseGrant", "LeaseGrantResult",
    "LeaseNotFound", "LeaseRevoke", "LeaseRevokeResult", "LeaseState", "LeaseTable",
    "LeaseTimeToLive", "LimitExceeded", "NotPrimary", "Put", "PutResult", "Range",
    "RangeResult", "Result", "SnapshotCorrupt", "Txn", "TxnOp", "TxnResponse", "TxnResult",
    "WatchFilter", "events_since", "in_range", "prefix_end", "restore", "snapshot",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(shoal.kv.__all__) == EXPECTED
    assert len(shoal.kv.__all__) == len(EXPECTED)


def test_every_name_exists() -> None:
    for name in shoal.kv.__all__:
        assert hasattr(shoal.kv, name), name
