"""The Raft log as one member holds it in memory: the last snapshot, then the entries after it.

Theory of operation. Indices below `first_index` were compacted into `snapshot`. Three
pointers only ever move forward except where noted:

    applied <= committed <= last_index        stabled <= last_index

`stabled` is the last index known durable; a conflicting append may pull it back, since
the entries after the conflict were replaced and the new ones are not durable yet.
Committed entries are never replaced: an attempt means a broken peer, and raises.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import CompactedError
from .types import Entry, Snapshot


class RaftLog:
    def __init__(self, snapshot: Snapshot, entries: Sequence[Entry], commit: int) -> None:
        for offset, entry in enumerate(entries):
            if entry.index != snapshot.index + 1 + offset:
                raise ValueError(
                    f"log entries not contiguous after snapshot {snapshot.index}: "
                    f"entry {offset} has index {entry.index}"
                )
        self.snapshot = snapshot
        self._entries: list[Entry] = list(entries)
        if commit > self.last_index:
            raise ValueError(f"commit {commit} beyond the last index {self.last_index}")
        self.committed = max(commit, snapshot.index)
        self.applied = snapshot.index
        self.applying = snapshot.index  # highest index handed to the driver to apply
        self.stabled = self.last_index
        self.pending_snapshot: Snapshot | None = None  # received, not yet handed out

    # -- positions ------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """The term at `index`, or None if it is compacted away or not yet written."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if self.snapshot.index < index <= self.last_index:
            return self._entries[index - self.first_index].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate's log is at least as up to date as ours (thesis 3.6.1)."""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= `index` whose term is <= `term` (or the snapshot index).

        Lets one rejection skip every entry of a term the follower does not share.
        """
        index = min(index, self.last_index)
        while index > self.snapshot.index:
            own = self.term(index)
            if own is not None and own <= term:
                break
            index -= 1
        return index

    # -- reading ----------------------------------------------------------------------------

    def entry(self, index: int) -> Entry:
        if index < self.first_index:
            raise CompactedError(f"index {index} is compacted (first is {self.first_index})")
        return self._entries[index - self.first_index]

    def slice(self, lo: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries from `lo` on, at most `max_bytes` of them but always at least one."""
        if lo < self.first_index:
            raise CompactedError(f"index {lo} is compacted (first is {self.first_index})")
        start = lo - self.first_index
        end, size = start, 0
        for end in range(start, len(self._entries)):  # no copy of the whole tail
            size += self._entries[end].size
            if size > max_bytes and end > start:
                break
        else:
            end = len(self._entries)
        return tuple(self._entries[start:end])

    def unstable(self) -> tuple[Entry, ...]:
        return tuple(self._entries[self.stabled + 1 - self.first_index :])

    def next_to_apply(self) -> tuple[Entry, ...]:
        lo = max(self.applying, self.snapshot.index) + 1
        if lo > self.committed:
            return ()
        return tuple(self._entries[lo - self.first_index : self.committed + 1 - self.first_index])

    # -- writing ----------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append a leader's own new entries (they always follow the last index)."""
        if entries and entries[0].index != self.last_index + 1:
            raise ValueError(f"append at {entries[0].index} after last {self.last_index}")
        self._entries.extend(entries)

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> tuple[int, int] | None:
        """A follower's append (thesis 3.5). None if the log does not match at prev_index.

        Returns (last index known to match the leader, first index replaced or 0).
        """
        if not self.match_term(prev_index, prev_term):
            return None
        new_from = 0  # the first entry we do not already hold
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                new_from = entry.index
                break
        replaced_from = 0
        if new_from:
            if new_from <= self.committed:
                raise AssertionError(
                    f"leader tried to replace committed entry {new_from} "
                    f"(committed {self.committed})"
                )
            if new_from <= self.last_index:
                del self._entries[new_from - self.first_index :]
                self.stabled = min(self.stabled, new_from - 1)
                replaced_from = new_from
            self._entries.extend(entries[new_from - entries[0].index :])
        last_new = prev_index + len(entries)
        self.commit_to(min(commit, last_new))
        return last_new, replaced_from

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index:
                raise AssertionError(f"commit {index} beyond last index {self.last_index}")
            self.committed = index

    def stable_to(self, index: int, term: int) -> None:
        # The entry may have been replaced after it was handed out; then it is not stable.
        if index > self.stabled and self.match_term(index, term):
            self.stabled = index

    def applied_to(self, index: int) -> None:
        self.applied = max(self.applied, index)
        self.applying = max(self.applying, index)

    def mark_handed_out(self, index: int) -> None:
        self.applying = max(self.applying, index)

    # -- snapshots --------------------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        """Replace everything with a snapshot received from the leader."""
        self.snapshot = snapshot
        self._entries = []
        self.committed = snapshot.index
        self.applied = self.applying = snapshot.index
        self.stabled = snapshot.index
        self.pending_snapshot = snapshot

    def compact(self, snapshot: Snapshot) -> None:
        """Drop entries up to a snapshot the driver took of its own applied state."""
        if snapshot.index > min(self.applied, self.stabled):
            raise ValueError(
                f"snapshot at {snapshot.index} beyond applied {self.applied} "
                f"or stable {self.stabled} entries"
            )
        if snapshot.index <= self.snapshot.index:
            return
        del self._entries[: snapshot.index - self.snapshot.index]
        self.snapshot = snapshot
