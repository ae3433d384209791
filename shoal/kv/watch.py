"""Watch event production: the events after a revision that match a key, range or prefix.

Theory of operation: the store keeps one global event log in revision order (every event
carries its revision; several events may share one when a write touched several keys).
A watcher that has seen everything up to revision R resumes with ``start_revision = R +
1`` and gets exactly what it missed, or `Compacted` when that history is gone, telling it
to re-list (read at the current revision) and watch from that revision + 1.

Only the production of events lives here; fanning one stream out to many watchers is the
node's job. Never: keep per-watcher state, do I/O, or reorder events.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidCommand
from .keys import TO_END, in_range, prefix_end
from .store import KeyValueStore
from .types import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchFilter:
    """The keys a watch covers: one key, ``[key, range_end)``, or (via `prefix`) a prefix."""

    key: bytes
    range_end: bytes | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise InvalidCommand("watch key must not be empty (use WatchFilter.all())")
        if self.range_end is not None and self.range_end != TO_END and self.range_end <= self.key:
            raise InvalidCommand(
                f"watch range_end {self.range_end!r} must be greater than key {self.key!r}"
            )

    @classmethod
    def prefix(cls, prefix: bytes) -> WatchFilter:
        """Every key that starts with ``prefix`` (an empty prefix means every key)."""
        if not prefix:
            return cls.all()
        return cls(key=prefix, range_end=prefix_end(prefix))

    @classmethod
    def all(cls) -> WatchFilter:
        return cls(key=b"\x00", range_end=TO_END)

    def matches(self, key: bytes) -> bool:
        return in_range(key, self.key, self.range_end)


def events_since(
    store: KeyValueStore, start_revision: int, watch_filter: WatchFilter
) -> list[Event]:
    """Events at ``start_revision`` or later that match the filter, in revision order.

    Raises `Compacted` if ``start_revision <= store.compacted_revision``. A start beyond
    the current revision yields no events (yet).
    """
    return [e for e in store.events(start_revision) if watch_filter.matches(e.kv.key)]
