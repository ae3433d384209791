"""WatchHub: idle watchers cost nothing per event; slow watchers are cut off, not waited on."""

from __future__ import annotations

import pytest

from shoal.kv import KeyValueStore, Put, WatchFilter
from shoal.node import watchhub
from shoal.node.watchhub import WatchHub


def _put(store: KeyValueStore, key: bytes, value: bytes = b"v") -> None:
    store.apply(Put(key=key, value=value), now=0.0)


def test_ten_thousand_idle_watchers_are_never_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    store, hub = KeyValueStore(), WatchHub()
    idle = [
        hub.subscribe(store, WatchFilter.prefix(f"idle/{i}/".encode()), store.revision + 1)
        for i in range(10_000)
    ]
    hot = hub.subscribe(store, WatchFilter.prefix(b"hot/"), store.revision + 1)
    pushes = 0
    original = watchhub.Watcher.push

    def counting_push(self: watchhub.Watcher, event: watchhub.Event) -> bool:
        nonlocal pushes
        pushes += 1
        return original(self, event)

    monkeypatch.setattr(watchhub.Watcher, "push", counting_push)
    for i in range(100):
        _put(store, f"hot/{i}".encode())
    hub.publish(store)
    assert pushes == 100  # one delivery per matching watcher per event, nothing else
    assert [e.kv.key for e in hot.drain()] == [f"hot/{i}".encode() for i in range(100)]
    assert all(not w.events for w in idle)


def test_history_then_live_events_arrive_once_in_order() -> None:
    store, hub = KeyValueStore(), WatchHub()
    _put(store, b"a/1")
    start = store.revision
    _put(store, b"a/2")
    watcher = hub.subscribe(store, WatchFilter.prefix(b"a/"), start)
    _put(store, b"a/3")
    _put(store, b"b/1")
    hub.publish(store)
    assert [e.kv.key for e in watcher.drain()] == [b"a/1", b"a/2", b"a/3"]


def test_single_key_and_range_watchers_match_exactly() -> None:
    store, hub = KeyValueStore(), WatchHub()
    one = hub.subscribe(store, WatchFilter(key=b"k"), store.revision + 1)
    _put(store, b"k")
    _put(store, b"k2")
    hub.publish(store)
    assert [e.kv.key for e in one.drain()] == [b"k"]


def test_slow_watcher_is_cut_off_with_where_to_resume() -> None:
    store, hub = KeyValueStore(), WatchHub(buffer=5)
    slow = hub.subscribe(store, WatchFilter.prefix(b"s/"), store.revision + 1)
    fast = hub.subscribe(store, WatchFilter.prefix(b"s/"), store.revision + 1)
    first = store.revision + 1
    for i in range(3):
        _put(store, f"s/{i}".encode())
    hub.publish(store)
    fast.drain()
    for i in range(3, 6):
        _put(store, f"s/{i}".encode())
    hub.publish(store)
    assert slow.closed is not None and "slow watcher" in slow.closed
    # It still gets the five it buffered, then is told where the gap starts.
    assert [e.revision for e in slow.drain()] == list(range(first, first + 5))
    assert f"resume from revision {first + 5}" in slow.closed
    assert fast.closed is None and len(fast.drain()) == 3
    assert hub.count == 1 and hub.cut_off == 1


def test_cut_off_never_splits_a_revision() -> None:
    """A txn's events share a revision; a watcher cut off inside it is told to resume at
    that revision and has none of it buffered, so "last seen + 1" loses nothing."""
    from shoal.kv import Txn

    store, hub = KeyValueStore(), WatchHub(buffer=3)
    watcher = hub.subscribe(store, WatchFilter.prefix(b"b/"), store.revision + 1)
    store.apply(Txn(success=tuple(Put(key=f"b/{i}".encode(), value=b"v") for i in range(5))), 0.0)
    hub.publish(store)
    assert watcher.closed is not None
    assert f"resume from revision {store.revision}" in watcher.closed
    assert watcher.drain() == []


def test_watch_from_a_future_revision_skips_earlier_events() -> None:
    store, hub = KeyValueStore(), WatchHub()
    watcher = hub.subscribe(store, WatchFilter.prefix(b"f/"), store.revision + 3)
    for i in range(4):
        _put(store, f"f/{i}".encode())
    hub.publish(store)
    assert [e.revision for e in watcher.drain()] == [store.revision - 1, store.revision]


def test_covering_drops_the_prefixes_others_in_the_set_cover() -> None:
    assert watchhub.covering([b"a/b/", b"a/", b"b", b"ab", b"a/"]) == (b"a/", b"ab", b"b")
    assert watchhub.covering([b"x", b""]) == (b"",)


def test_a_prefix_set_watcher_gets_each_matching_event_once_in_order() -> None:
    store, hub = KeyValueStore(), WatchHub()
    watcher = hub.subscribe_prefixes(store, [b"p/0/", b"p/1/", b"p/1/x/"], store.revision + 1)
    for key in (b"p/0/a", b"p/2/a", b"p/1/x/y", b"p/10/a", b"p/1/b"):
        _put(store, key)
    hub.publish(store)
    assert [e.kv.key for e in watcher.drain()] == [b"p/0/a", b"p/1/x/y", b"p/1/b"]
    assert hub.count == 1
    hub.unsubscribe(watcher)
    assert hub.count == 0 and hub._by_prefix == {} and hub._lengths == []


def test_a_prefix_set_watcher_replays_history_of_its_prefixes_only() -> None:
    store, hub = KeyValueStore(), WatchHub()
    start = store.revision + 1
    for key in (b"q/a", b"r/a", b"s/a", b"q/b"):
        _put(store, key)
    watcher = hub.subscribe_prefixes(store, [b"q/", b"s/"], start + 1)
    assert [e.kv.key for e in watcher.drain()] == [b"s/a", b"q/b"]


def test_an_empty_prefix_set_is_refused() -> None:
    with pytest.raises(ValueError):
        WatchHub().subscribe_prefixes(KeyValueStore(), [], 1)


def test_a_slow_prefix_set_watcher_is_cut_off_from_every_prefix() -> None:
    store, hub = KeyValueStore(), WatchHub(buffer=2)
    watcher = hub.subscribe_prefixes(store, [b"u/", b"v/"], store.revision + 1)
    for key in (b"u/1", b"v/1", b"u/2"):
        _put(store, key)
    hub.publish(store)
    assert watcher.closed is not None and "resume from revision" in watcher.closed
    assert hub.count == 0
