"""Fan-out of KV events to watchers: one stream in, many bounded queues out.

Theory of operation. After every apply the member calls `publish(store)`; the hub reads
the new events once and hands each to the watchers whose prefix matches its key. Prefix
watchers are indexed by prefix, so an event costs one dict lookup per distinct prefix
length, not one check per watcher: ten thousand idle watchers cost memory, not CPU.
A watcher of a *set* of prefixes (`subscribe_prefixes`: the partitions a consumer owns)
is indexed under each of them; a prefix another one of the set covers is dropped first,
so every key matches at most one indexed prefix of a watcher and no event comes twice.
Each watcher has a bounded buffer; a watcher that falls further behind is cut off with a
reason that tells it where to resume, instead of slowing everyone else.

Waking. A stream waits on one bare future (`Watcher.wait`), resolved by the first push
after it started waiting: one callback per watcher per batch of events, no `asyncio.Event`
bookkeeping nor a timeout task per wait (those were most of a fan-out's CPU in a profile).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from ..kv import Event, KeyValueStore, WatchFilter, events_since, prefix_end

DEFAULT_BUFFER = 10_000


class Watcher:
    __slots__ = (
        "_waiter",
        "buffer",
        "closed",
        "events",
        "filters",
        "last_revision",
        "prefixes",
        "start_revision",
    )

    def __init__(
        self, filters: tuple[WatchFilter, ...], prefixes: tuple[bytes, ...] | None, buffer: int
    ) -> None:
        self.filters = filters  # an event matching any of them is the watcher's
        self.prefixes = prefixes  # indexed under these, or None for a single key/range
        self.events: deque[Event] = deque()
        self.buffer = buffer
        self.closed: str | None = None  # why the hub cut it off
        self.last_revision = 0
        self.start_revision = 1  # events before it were not asked for
        self._waiter: asyncio.Future[None] | None = None

    def push(self, event: Event) -> bool:
        if len(self.events) >= self.buffer:
            return False
        self.events.append(event)
        if self._waiter is not None:
            self.wake()
        return True

    def close(self, reason: str) -> None:
        self.closed = reason
        self.wake()

    def wake(self) -> None:
        """End the current `wait` early (a push, a close, or the stream's own timer)."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until there are events, the watcher is closed, or someone calls `wake`."""
        if self.events or self.closed is not None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def drain(self) -> list[Event]:
        out = list(self.events)
        self.events.clear()
        if out:
            self.last_revision = out[-1].revision
        return out


class WatchHub:
    def __init__(self, buffer: int = DEFAULT_BUFFER) -> None:
        self._buffer = buffer
        self._by_prefix: dict[bytes, set[Watcher]] = {}
        self._lengths: list[int] = []  # distinct prefix lengths, ascending
        self._others: set[Watcher] = set()
        self._published = 0
        self.cut_off = 0

    @property
    def count(self) -> int:
        watchers = {w for group in self._by_prefix.values() for w in group}
        return len(watchers) + len(self._others)

    def subscribe(
        self, store: KeyValueStore, watch_filter: WatchFilter, start_revision: int
    ) -> Watcher:
        """Register a watcher and queue the history it asked for (raises `Compacted`)."""
        prefix = _as_prefix(watch_filter)
        prefixes = None if prefix is None else (prefix,)
        return self._register(
            store, Watcher((watch_filter,), prefixes, self._buffer), start_revision
        )

    def subscribe_prefixes(
        self, store: KeyValueStore, prefixes: Iterable[bytes], start_revision: int
    ) -> Watcher:
        """One watcher for every key under any of `prefixes` (a non-empty set; overlaps
        are fine), history from `start_revision` queued (raises `Compacted`)."""
        kept = covering(prefixes)
        if not kept:
            raise ValueError("a prefix set needs at least one prefix")
        filters = tuple(WatchFilter.prefix(p) for p in kept)
        return self._register(store, Watcher(filters, kept, self._buffer), start_revision)

    def _register(self, store: KeyValueStore, watcher: Watcher, start_revision: int) -> Watcher:
        # Flush what others have not seen yet, then replay history for this one: nothing
        # can slip between the replay and the registration, nor arrive twice.
        self.publish(store)
        start = max(1, start_revision)
        if len(watcher.filters) == 1:
            history = events_since(store, start, watcher.filters[0])
        else:
            history = [e for e in store.events(start) if _matches(watcher.filters, e.kv.key)]
        watcher.start_revision = start
        watcher.last_revision = max(0, start_revision - 1)
        watcher.events.extend(history)
        if watcher.prefixes is None:
            self._others.add(watcher)
            return watcher
        for prefix in watcher.prefixes:
            if prefix not in self._by_prefix:
                self._by_prefix[prefix] = set()
                self._lengths = sorted({len(p) for p in self._by_prefix})
            self._by_prefix[prefix].add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        if watcher.prefixes is None:
            self._others.discard(watcher)
            return
        for prefix in watcher.prefixes:
            group = self._by_prefix.get(prefix)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._by_prefix[prefix]
                    self._lengths = sorted({len(p) for p in self._by_prefix})

    def publish(self, store: KeyValueStore) -> None:
        if store.revision <= self._published:
            return
        events = store.events(max(self._published + 1, store.compacted_revision + 1))
        self._published = store.revision
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        key = event.kv.key
        for length in self._lengths:
            if length > len(key):
                break
            group = self._by_prefix.get(key[:length])
            if group:
                for watcher in list(group):
                    self._deliver(watcher, event)
        for watcher in list(self._others):
            if watcher.filters[0].matches(key):
                self._deliver(watcher, event)

    def _deliver(self, watcher: Watcher, event: Event) -> None:
        if event.revision < watcher.start_revision:
            return  # a watch from a future revision, on a member still catching up
        if not watcher.push(event):
            self.cut_off += 1
            self.unsubscribe(watcher)
            # Never end a stream inside a revision: drop the revision's part already
            # buffered, so "resume from last seen + 1" loses nothing.
            while watcher.events and watcher.events[-1].revision == event.revision:
                watcher.events.pop()
            watcher.close(
                f"slow watcher: more than {watcher.buffer} events unread; "
                f"resume from revision {event.revision}"
            )

    def reset(self, revision: int) -> None:
        """A snapshot replaced the store: watchers must re-list, as after a compaction."""
        self.close_all("the member installed a snapshot; re-list and watch again")
        self._published = revision

    def close_all(self, reason: str) -> None:
        for group in list(self._by_prefix.values()):
            for watcher in group:
                watcher.close(reason)  # a set's watcher may be closed twice: harmless
        for watcher in self._others:
            watcher.close(reason)
        self._by_prefix.clear()
        self._others.clear()
        self._lengths = []


def covering(prefixes: Iterable[bytes]) -> tuple[bytes, ...]:
    """The prefixes no other one of the set covers, sorted (`a/` covers `a/b/`)."""
    kept: list[bytes] = []
    for prefix in sorted(set(prefixes)):
        # Sorted, a covering prefix comes right before what it covers.
        if kept and prefix.startswith(kept[-1]):
            continue
        kept.append(prefix)
    return tuple(kept)


def _matches(filters: tuple[WatchFilter, ...], key: bytes) -> bool:
    return any(f.matches(key) for f in filters)


def _as_prefix(watch_filter: WatchFilter) -> bytes | None:
    if watch_filter.range_end is None:
        return None
    if watch_filter == WatchFilter.all():
        return b""
    if watch_filter.range_end == prefix_end(watch_filter.key):
        return watch_filter.key
    return None
