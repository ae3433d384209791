"""The durable state of one control-plane member: a WAL plus snapshot files, kept consistent.

Layout: `{data_dir}/wal/` (see wal.py) and `{data_dir}/snap/` (see snapfile.py).

Rules kept:

1. `persist(rd)` follows the Ready contract (rawnode.py): the snapshot first (its file is
   durable before the WAL marker that lets old segments go), then the entries, then the
   hard state, then ONE fsync for all of it -- group commit. A Ready with nothing to
   persist costs no fsync.
2. `open()` returns exactly what `RawNode(config, rng, hard_state=, snapshot=, entries=)`
   needs. The snapshot file is the source of truth for the state machine; the WAL gives the
   entries after it. If the WAL was compacted past every snapshot file that reads back
   intact, entries are missing for good: `SnapshotMismatchError`, never a silent gap.
3. No Raft decisions are made here; this module only stores and reloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..raft import Entry, HardState, Ready, Snapshot
from .snapfile import SnapshotFiles
from .wal import DEFAULT_SEGMENT_BYTES, StorageError, WriteAheadLog


class SnapshotMismatchError(StorageError):
    """The WAL and the snapshot files do not fit together."""


@dataclass(frozen=True, slots=True)
class Restored:
    """What a member persisted, ready for `RawNode(..., hard_state=, snapshot=, entries=)`;
    `snapshot` is the empty `Snapshot()` when no snapshot file exists."""

    hard_state: HardState
    snapshot: Snapshot
    entries: tuple[Entry, ...]
    truncated_bytes: int = 0
    skipped_snapshots: tuple[tuple[Path, str], ...] = ()

    @property
    def is_empty(self) -> bool:
        """True for a member that never persisted anything (first start)."""
        return self.snapshot == Snapshot() and not self.entries and self.hard_state == HardState()


class MemberStorage:
    def __init__(self, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._snaps = SnapshotFiles(directory / "snap")
        self._wal: WriteAheadLog | None = None

    def open(self) -> Restored:
        if self._wal is not None:
            raise ValueError("storage is already open")
        snapshot = self._snaps.load_newest()
        skipped = tuple(self._snaps.skipped)
        wal, contents = WriteAheadLog.open(
            self.directory / "wal", segment_bytes=self._segment_bytes
        )
        try:
            entries = _entries_after(
                snapshot, contents.snapshot_index, contents.snapshot_term, contents.entries, skipped
            )
        except SnapshotMismatchError:
            wal.close()
            raise
        self._wal = wal
        if snapshot is not None and snapshot.index > contents.snapshot_index:
            # A crash came between the snapshot file and its WAL marker: finish the job.
            wal.mark_snapshot(snapshot.index, snapshot.term)
            wal.sync()
        return Restored(
            hard_state=contents.hard_state,
            snapshot=snapshot or Snapshot(),
            entries=tuple(entries),
            truncated_bytes=contents.truncated_bytes,
            skipped_snapshots=skipped,
        )

    def persist(self, rd: Ready) -> float | None:
        """Make `rd.snapshot`, `rd.entries` and `rd.hard_state` durable, in that order;
        the seconds the WAL's fsync took, None when none was needed."""
        if not rd.must_persist:
            return None
        wal = self._require_wal()
        if rd.snapshot is not None:
            self._snaps.save(rd.snapshot)
            wal.mark_snapshot(rd.snapshot.index, rd.snapshot.term)
        wal.append(rd.entries, rd.hard_state)
        if not rd.must_sync:
            return None  # a commit-index-only change rides along with the next sync
        started = time.perf_counter()
        wal.sync()
        return time.perf_counter() - started

    def persist_buffered(self, rd: Ready) -> bool:
        """Persist `rd` now, on the caller's thread, if that needs no disk I/O: it needs
        no fsync (only the commit index moved, which rides along with the next sync) and
        the WAL's segment does not rotate. False, with nothing done, otherwise."""
        if rd.must_sync or rd.snapshot is not None or rd.entries:
            return False
        wal = self._require_wal()
        if not wal.buffers(64):  # a packed hard state is < 40 bytes
            return False
        wal.append((), rd.hard_state)
        return True

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot this member took of its own state (or the bootstrap one at
        index 0); WAL segments it makes obsolete are deleted."""
        wal = self._require_wal()
        self._snaps.save(snapshot)
        wal.mark_snapshot(snapshot.index, snapshot.term)
        wal.sync()

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()
            self._wal = None

    @property
    def syncs(self) -> int:
        """WAL fsyncs so far (for metrics and the group-commit test)."""
        return self._require_wal().syncs

    @property
    def wal(self) -> WriteAheadLog:
        return self._require_wal()

    def _require_wal(self) -> WriteAheadLog:
        if self._wal is None:
            raise ValueError("storage is not open")
        return self._wal


def _entries_after(
    snapshot: Snapshot | None,
    marker_index: int,
    marker_term: int,
    entries: list[Entry],
    skipped: tuple[tuple[Path, str], ...],
) -> list[Entry]:
    snap_index = snapshot.index if snapshot is not None else 0
    if marker_index > snap_index:
        have = f"the newest valid snapshot file is at index {snap_index}"
        if snapshot is None:
            have = "there is no valid snapshot file"
        damaged = "".join(f"; skipped {path}: {reason}" for path, reason in skipped)
        raise SnapshotMismatchError(
            f"the WAL is compacted to index {marker_index} but {have}{damaged}; "
            "refusing to start (restore this member from a peer)"
        )
    if snapshot is None:
        return entries
    if marker_index == snap_index:
        if marker_index > 0 and marker_term != snapshot.term:
            raise SnapshotMismatchError(
                f"the WAL snapshot marker at index {marker_index} has term {marker_term} "
                f"but the snapshot file has term {snapshot.term}; refusing to start"
            )
        return entries
    # The snapshot is newer than the marker: treat it as Raft does when installing one.
    first = marker_index + 1
    at = snapshot.index - first
    if 0 <= at < len(entries) and entries[at].term == snapshot.term:
        return entries[at + 1 :]
    return []


__all__ = ["MemberStorage", "Restored", "SnapshotMismatchError"]
