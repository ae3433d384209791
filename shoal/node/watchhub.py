"""Fan-out of KV events to watchers: one stream in, many bounded queues out.

Theory of operation. After every apply the member calls `publish(store)`; the hub reads
the new events once and hands each to the watchers whose prefix matches its key. Prefix
watchers are indexed by prefix, so an event costs one dict lookup per distinct prefix
length, not one check per watcher: ten thousand idle watchers cost memory, not CPU.
Each watcher has a bounded buffer; a watcher that falls further behind is cut off with a
reason that tells it where to resume, instead of slowing everyone else.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..kv import Event, KeyValueStore, WatchFilter, events_since, prefix_end

DEFAULT_BUFFER = 10_000


class Watcher:
    def __init__(self, watch_filter: WatchFilter, prefix: bytes | None, buffer: int) -> None:
        self.filter = watch_filter
        self.prefix = prefix  # indexed by this prefix, or None for a single key/range
        self.events: deque[Event] = deque()
        self.buffer = buffer
        self.wakeup = asyncio.Event()
        self.closed: str | None = None  # why the hub cut it off
        self.last_revision = 0
        self.start_revision = 1  # events before it were not asked for

    def push(self, event: Event) -> bool:
        if len(self.events) >= self.buffer:
            return False
        self.events.append(event)
        self.wakeup.set()
        return True

    def close(self, reason: str) -> None:
        self.closed = reason
        self.wakeup.set()

    def drain(self) -> list[Event]:
        out = list(self.events)
        self.events.clear()
        self.wakeup.clear()
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
        return sum(len(ws) for ws in self._by_prefix.values()) + len(self._others)

    def subscribe(
        self, store: KeyValueStore, watch_filter: WatchFilter, start_revision: int
    ) -> Watcher:
        """Register a watcher and queue the history it asked for (raises `Compacted`)."""
        prefix = _as_prefix(watch_filter)
        watcher = Watcher(watch_filter, prefix, self._buffer)
        # Flush what others have not seen yet, then replay history for this one: nothing
        # can slip between the replay and the registration, nor arrive twice.
        self.publish(store)
        history = events_since(store, max(1, start_revision), watch_filter)
        watcher.start_revision = max(1, start_revision)
        watcher.last_revision = max(0, start_revision - 1)
        for event in history:
            watcher.events.append(event)
        if history:
            watcher.wakeup.set()
        if prefix is None:
            self._others.add(watcher)
        else:
            if prefix not in self._by_prefix:
                self._by_prefix[prefix] = set()
                self._lengths = sorted({len(p) for p in self._by_prefix})
            self._by_prefix[prefix].add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        if watcher.prefix is None:
            self._others.discard(watcher)
            return
        group = self._by_prefix.get(watcher.prefix)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self._by_prefix[watcher.prefix]
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
            if watcher.filter.matches(key):
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
                watcher.close(reason)
        for watcher in self._others:
            watcher.close(reason)
        self._by_prefix.clear()
        self._others.clear()
        self._lengths = []


def _as_prefix(watch_filter: WatchFilter) -> bytes | None:
    if watch_filter.range_end is None:
        return None
    if watch_filter == WatchFilter.all():
        return b""
    if watch_filter.range_end == prefix_end(watch_filter.key):
        return watch_filter.key
    return None
