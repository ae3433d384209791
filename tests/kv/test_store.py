"""Revision semantics of the key space, mirroring etcd's MVCC store."""

from __future__ import annotations

import pytest

from shoal.kv import (
    Compact,
    Compacted,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    EventType,
    FutureRevision,
    InvalidCommand,
    KeyValue,
    KeyValueStore,
    LeaseGrant,
    LeaseNotFound,
    Put,
    PutResult,
    Range,
    RangeResult,
    Txn,
    TxnResult,
    prefix_end,
)

NOW = 100.0


def put(store: KeyValueStore, key: bytes, value: bytes, lease: int = 0) -> PutResult:
    result = store.apply(Put(key=key, value=value, lease=lease), NOW)
    assert isinstance(result, PutResult)
    return result


def txn(store: KeyValueStore, command: Txn) -> TxnResult:
    result = store.apply(command, NOW)
    assert isinstance(result, TxnResult)
    return result


def cmp(key: bytes, target: CompareTarget, op: CompareOp, value: bytes | int | bool) -> Compare:
    return Compare(key=key, target=target, op=op, value=value)


def test_a_new_store_is_at_revision_1_with_no_keys() -> None:
    store = KeyValueStore()
    assert store.revision == 1
    assert store.compacted_revision == 0
    assert store.get(b"a") is None
    assert store.range(b"\x00", b"\x00") == RangeResult((), False, 0)


def test_put_sets_create_and_mod_revision_and_version() -> None:
    store = KeyValueStore()
    assert put(store, b"a", b"1") == PutResult(revision=2)
    assert store.get(b"a") == KeyValue(
        key=b"a", value=b"1", create_revision=2, mod_revision=2, version=1
    )
    put(store, b"b", b"x")
    assert put(store, b"a", b"2").revision == 4
    assert store.get(b"a") == KeyValue(
        key=b"a", value=b"2", create_revision=2, mod_revision=4, version=2
    )


def test_put_returns_prev_kv_only_when_asked() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")
    result = store.apply(Put(key=b"a", value=b"2", prev_kv=True), NOW)
    assert isinstance(result, PutResult)
    assert result.prev is not None and result.prev.value == b"1"
    assert put(store, b"a", b"3").prev is None


def test_delete_resets_version_and_create_revision() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")
    put(store, b"a", b"2")
    assert store.apply(Delete(key=b"a"), NOW) == DeleteResult(revision=4, deleted=1)
    assert store.get(b"a") is None
    put(store, b"a", b"3")
    kv = store.get(b"a")
    assert kv is not None
    assert (kv.create_revision, kv.mod_revision, kv.version) == (5, 5, 1)


def test_delete_of_missing_key_does_not_advance_revision() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")
    assert store.apply(Delete(key=b"b"), NOW) == DeleteResult(revision=2, deleted=0)
    assert store.apply(Delete(key=b"b", range_end=b"\x00"), NOW) == DeleteResult(
        revision=2, deleted=0
    )
    assert store.revision == 2


def test_prefix_delete_is_one_revision() -> None:
    store = KeyValueStore()
    for key in (b"/a/1", b"/a/2", b"/a/3", b"/b/1"):
        put(store, key, b"v")
    result = store.apply(Delete(key=b"/a/", range_end=prefix_end(b"/a/"), prev_kv=True), NOW)
    assert isinstance(result, DeleteResult)
    assert (result.revision, result.deleted) == (6, 3)
    assert [kv.key for kv in result.prev_kvs] == [b"/a/1", b"/a/2", b"/a/3"]
    assert [kv.key for kv in store.range(b"\x00", b"\x00").kvs] == [b"/b/1"]
    assert {e.revision for e in store.events(6)} == {6}
    assert [e.type for e in store.events(6)] == [EventType.DELETE] * 3


def test_range_sorted_with_limit_and_count() -> None:
    store = KeyValueStore()
    for key in (b"c", b"a", b"b", b"d"):
        put(store, key, key)
    kvs, more, count = store.range(b"a", b"d", limit=2)
    assert [kv.key for kv in kvs] == [b"a", b"b"]
    assert (more, count) == (True, 3)
    assert [kv.key for kv in store.range(b"b", b"\x00").kvs] == [b"b", b"c", b"d"]
    assert store.range(b"c").count == 1
    assert store.range(b"a", b"d", limit=3).more is False


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"
    assert prefix_end(b"") == b"\x00"


def test_reads_at_old_revisions() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")  # 2
    put(store, b"b", b"1")  # 3
    put(store, b"a", b"2")  # 4
    store.apply(Delete(key=b"b"), NOW)  # 5
    assert store.get(b"a", revision=1) is None
    assert store.get(b"a", revision=3) == KeyValue(
        key=b"a", value=b"1", create_revision=2, mod_revision=2, version=1
    )
    assert [kv.value for kv in store.range(b"a", b"\x00", revision=3).kvs] == [b"1", b"1"]
    assert [kv.key for kv in store.range(b"a", b"\x00", revision=5).kvs] == [b"a"]
    with pytest.raises(FutureRevision, match="revision 6 is in the future"):
        store.get(b"a", revision=6)
    with pytest.raises(InvalidCommand, match="revision must be >= 1, got 0"):
        store.get(b"a", revision=0)


def test_compaction_drops_old_history_and_raises_compacted() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")  # 2
    put(store, b"b", b"1")  # 3
    store.apply(Delete(key=b"b"), NOW)  # 4
    put(store, b"a", b"2")  # 5
    put(store, b"c", b"1")  # 6
    result = store.apply(Compact(revision=4), NOW)
    assert (result.revision, store.compacted_revision) == (6, 4)
    with pytest.raises(Compacted) as info:
        store.get(b"a", revision=3)
    assert str(info.value) == "revision 3 has been compacted (compacted revision 4)"
    assert (info.value.revision, info.value.compacted_revision) == (3, 4)
    # The compacted revision itself stays readable, and so does everything after it.
    assert [kv.key for kv in store.range(b"a", b"\x00", revision=4).kvs] == [b"a"]
    assert store.get(b"a", revision=4) is not None
    assert store.get(b"b", revision=4) is None
    assert store.get(b"c", revision=5) is None
    assert store.get(b"a") == KeyValue(
        key=b"a", value=b"2", create_revision=2, mod_revision=5, version=2
    )
    # Watches resume after the compacted revision.
    with pytest.raises(Compacted):
        store.events(4)
    assert [e.revision for e in store.events(5)] == [5, 6]


def test_compact_errors() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")
    with pytest.raises(FutureRevision, match="revision 3 is in the future"):
        store.apply(Compact(revision=3), NOW)
    store.apply(Compact(revision=2), NOW)
    with pytest.raises(Compacted, match="revision 2 has been compacted"):
        store.apply(Compact(revision=2), NOW)


def test_txn_compares_on_value_version_create_and_mod_revision() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")  # 2
    put(store, b"a", b"2")  # 3
    holds = [
        cmp(b"a", CompareTarget.VALUE, CompareOp.EQ, b"2"),
        cmp(b"a", CompareTarget.VALUE, CompareOp.GT, b"1"),
        cmp(b"a", CompareTarget.VERSION, CompareOp.EQ, 2),
        cmp(b"a", CompareTarget.CREATE_REVISION, CompareOp.EQ, 2),
        cmp(b"a", CompareTarget.MOD_REVISION, CompareOp.LT, 4),
        cmp(b"a", CompareTarget.MOD_REVISION, CompareOp.NE, 2),
        cmp(b"a", CompareTarget.LEASE, CompareOp.EQ, 0),
        cmp(b"a", CompareTarget.EXISTS, CompareOp.EQ, True),
        cmp(b"z", CompareTarget.EXISTS, CompareOp.NE, True),
        cmp(b"z", CompareTarget.CREATE_REVISION, CompareOp.EQ, 0),
        cmp(b"z", CompareTarget.VERSION, CompareOp.LT, 1),
    ]
    fails = [
        cmp(b"a", CompareTarget.VALUE, CompareOp.EQ, b"1"),
        cmp(b"a", CompareTarget.VERSION, CompareOp.GT, 2),
        cmp(b"z", CompareTarget.VALUE, CompareOp.NE, b"x"),  # value compare on missing key
        cmp(b"z", CompareTarget.EXISTS, CompareOp.EQ, True),
    ]
    for c in holds:
        assert txn(store, Txn(compares=(c,))).succeeded, c
    for c in fails:
        assert not txn(store, Txn(compares=(c,))).succeeded, c
    assert store.revision == 3  # read-only txns do not advance the revision


def test_txn_runs_one_branch_in_one_revision() -> None:
    store = KeyValueStore()
    put(store, b"x", b"old")  # 2
    result = txn(
        store,
        Txn(
            compares=(cmp(b"x", CompareTarget.VALUE, CompareOp.EQ, b"old"),),
            success=(
                Put(key=b"a", value=b"1"),
                Put(key=b"b", value=b"1"),
                Delete(key=b"x", prev_kv=True),
                Range(key=b"a", range_end=b"\x00"),
            ),
            failure=(Put(key=b"f", value=b"1"),),
        ),
    )
    assert result.succeeded and result.revision == 3
    put_a, put_b, delete, read = result.responses
    assert put_a == PutResult(revision=3) and put_b == PutResult(revision=3)
    assert isinstance(delete, DeleteResult) and delete.deleted == 1
    assert isinstance(read, RangeResult)
    assert [kv.key for kv in read.kvs] == [b"a", b"b"]  # reads see the txn's own writes
    assert store.get(b"f") is None
    assert {e.revision for e in store.events(3)} == {3}
    result = txn(
        store,
        Txn(
            compares=(cmp(b"x", CompareTarget.EXISTS, CompareOp.EQ, True),),
            failure=(Put(key=b"f", value=b"1"),),
        ),
    )
    assert not result.succeeded and result.revision == 4
    assert store.get(b"f") is not None


def test_txn_is_atomic_when_an_op_fails() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")
    put(store, b"c", b"1")
    events_before = store.events(1)
    with pytest.raises(LeaseNotFound, match="lease 7 not found"):
        store.apply(
            Txn(
                success=(
                    Put(key=b"a", value=b"2"),
                    Delete(key=b"c"),
                    Range(key=b"a"),
                    Put(key=b"b", value=b"2", lease=7),
                )
            ),
            NOW,
        )
    assert store.revision == 3
    assert store.get(b"a") == KeyValue(
        key=b"a", value=b"1", create_revision=2, mod_revision=2, version=1
    )
    assert store.get(b"b") is None
    assert store.get(b"c") is not None
    assert store.events(1) == events_before


def test_put_with_unknown_lease_is_rejected_without_change() -> None:
    store = KeyValueStore()
    with pytest.raises(LeaseNotFound) as info:
        store.apply(Put(key=b"a", value=b"1", lease=42), NOW)
    assert info.value.lease_id == 42
    assert store.revision == 1


def test_lease_grant_does_not_advance_revision() -> None:
    store = KeyValueStore()
    result = store.apply(LeaseGrant(id=5, ttl_seconds=10), NOW)
    assert (result.revision, store.revision) == (1, 1)


def test_apply_rejects_non_commands() -> None:
    store = KeyValueStore()
    with pytest.raises(InvalidCommand, match="not a KV command"):
        store.apply(Range(key=b"a"), NOW)  # type: ignore[arg-type]


def test_events_carry_prev_kv_and_tombstones() -> None:
    store = KeyValueStore()
    put(store, b"a", b"1")
    put(store, b"a", b"2")
    store.apply(Delete(key=b"a"), NOW)
    first, second, third = store.events(2)
    assert (first.type, first.prev_kv) == (EventType.PUT, None)
    assert second.prev_kv == first.kv
    assert third.type is EventType.DELETE
    assert third.kv == KeyValue(key=b"a", value=b"", create_revision=0, mod_revision=4, version=0)
    assert third.prev_kv == second.kv
    with pytest.raises(InvalidCommand, match="start_revision must be >= 1, got 0"):
        store.events(0)
    assert store.events(99) == []
