"""Watch events: in revision order, filtered by key, range or prefix, resumable."""

from __future__ import annotations

import pytest

from shoal.kv import (
    Compact,
    Compacted,
    Delete,
    EventType,
    InvalidCommand,
    KeyValueStore,
    Put,
    Txn,
    WatchFilter,
    events_since,
)


def build() -> KeyValueStore:
    store = KeyValueStore()
    store.apply(Put(key=b"/svc/a", value=b"1"), 0.0)  # 2
    store.apply(Put(key=b"/cfg/x", value=b"1"), 0.0)  # 3
    store.apply(Txn(success=(Put(key=b"/svc/b", value=b"1"), Put(key=b"/svc/c", value=b"1"))), 0)
    store.apply(Delete(key=b"/svc/", range_end=b"/svc0"), 0.0)  # 5
    return store


def test_prefix_watch_sees_only_its_keys_in_order() -> None:
    events = events_since(build(), 1, WatchFilter.prefix(b"/svc/"))
    assert [(e.revision, e.type, e.kv.key) for e in events] == [
        (2, EventType.PUT, b"/svc/a"),
        (4, EventType.PUT, b"/svc/b"),
        (4, EventType.PUT, b"/svc/c"),
        (5, EventType.DELETE, b"/svc/a"),
        (5, EventType.DELETE, b"/svc/b"),
        (5, EventType.DELETE, b"/svc/c"),
    ]


def test_resume_from_last_seen_plus_one_gets_exactly_the_rest() -> None:
    store = build()
    everything = events_since(store, 1, WatchFilter.all())
    for last_seen in range(1, store.revision + 1):
        resumed = events_since(store, last_seen + 1, WatchFilter.all())
        assert resumed == [e for e in everything if e.revision > last_seen]


def test_single_key_and_range_filters() -> None:
    store = build()
    assert [e.revision for e in events_since(store, 1, WatchFilter(key=b"/cfg/x"))] == [3]
    ranged = events_since(store, 4, WatchFilter(key=b"/svc/b", range_end=b"/svc/c"))
    assert [(e.revision, e.kv.key) for e in ranged] == [(4, b"/svc/b"), (5, b"/svc/b")]
    assert WatchFilter.prefix(b"") == WatchFilter.all()


def test_watch_from_compacted_history_raises() -> None:
    store = build()
    store.apply(Compact(revision=4), 0.0)
    with pytest.raises(Compacted, match="revision 4 has been compacted"):
        events_since(store, 4, WatchFilter.all())
    assert [e.revision for e in events_since(store, 5, WatchFilter.all())] == [5, 5, 5]


def test_watch_filter_validation() -> None:
    with pytest.raises(InvalidCommand, match="watch key must not be empty"):
        WatchFilter(key=b"")
    with pytest.raises(InvalidCommand, match="watch range_end b'a' must be greater than key"):
        WatchFilter(key=b"b", range_end=b"a")
