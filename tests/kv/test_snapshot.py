"""Snapshots round-trip the current state exactly and refuse damaged bytes."""

from __future__ import annotations

import pytest

from shoal.kv import (
    Compacted,
    Delete,
    KeyValueStore,
    LeaseCheckpoint,
    LeaseGrant,
    Put,
    SnapshotCorrupt,
    WatchFilter,
    events_since,
    restore,
    snapshot,
)


def build() -> KeyValueStore:
    store = KeyValueStore()
    store.apply(LeaseGrant(id=1, ttl_seconds=30), 0.0)
    store.apply(LeaseGrant(id=2, ttl_seconds=90), 0.0)
    store.apply(LeaseCheckpoint(id=2, remaining_seconds=12.5), 0.0)
    store.apply(Put(key=b"a", value=b"1", lease=1), 0.0)
    store.apply(Put(key=b"a", value=b"2", lease=1), 0.0)
    store.apply(Put(key=b"b", value=b"\x00\xff" * 100), 0.0)
    store.apply(Put(key=b"c", value=b""), 0.0)
    store.apply(Delete(key=b"c"), 0.0)
    return store


def test_round_trip_is_exact_for_current_state() -> None:
    store = build()
    copy = restore(snapshot(store))
    assert copy.revision == store.revision == 6
    assert copy.compacted_revision == 6
    assert copy.range(b"\x00", b"\x00") == store.range(b"\x00", b"\x00")
    assert copy.leases.states() == store.leases.states()
    assert copy.leases.keys_of(1) == {b"a"}
    assert copy.leases.time_to_live(2, 0.0).remaining == 12.5
    assert snapshot(copy) == snapshot(store)


def test_after_restore_history_starts_at_the_snapshot_revision() -> None:
    copy = restore(snapshot(build()))
    assert copy.get(b"a", revision=6) is not None
    with pytest.raises(Compacted):
        copy.get(b"a", revision=5)
    with pytest.raises(Compacted):
        events_since(copy, 6, WatchFilter.all())
    copy.apply(Put(key=b"d", value=b"1"), 0.0)
    assert [e.revision for e in events_since(copy, 7, WatchFilter.all())] == [7]


def test_empty_store_round_trips() -> None:
    copy = restore(snapshot(KeyValueStore()))
    assert (copy.revision, len(copy.leases)) == (1, 0)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:10], "too short for a header"),
        (lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:], "checksum mismatch"),
        (lambda b: b[:-5] + b[-4:], "checksum mismatch"),
    ],
)
def test_damaged_snapshots_are_refused(damage: object, message: str) -> None:
    data = snapshot(build())
    with pytest.raises(SnapshotCorrupt, match=message):
        restore(damage(data))  # type: ignore[operator]


def test_unknown_format_is_refused() -> None:
    import zlib

    data = snapshot(KeyValueStore())
    body = b"NOTSHOAL" + data[8:-4]
    with pytest.raises(SnapshotCorrupt, match="unknown snapshot format"):
        restore(body + zlib.crc32(body).to_bytes(4, "big"))
