"""The write-ahead log of one member: Raft entries, hard state and snapshot markers, on disk.

Theory of operation. The log is a directory of append-only segment files named
`{seq:016x}-{first_index:016x}.wal`; `seq` counts up from 0 with no holes, `first_index` is
the index the segment's first new entry was expected to have (informational). A segment is
a run of records:

    [u32 length][u32 crc32(type + payload)][u8 type][payload]      little endian

with a msgpack payload. Nothing is ever edited in place; replay gives records meaning:

- ENTRIES: a contiguous batch. One that starts at or below the last index replaces every
  entry from its first index on -- this is how a Raft log overwrite is persisted.
- HARD_STATE: the latest one wins.
- SNAPSHOT (index, term): the log is compacted to a snapshot. As in Raft (thesis 5.1), the
  entries after it survive only if the log holds the snapshot's own entry with its term;
  otherwise the snapshot replaced the whole log.

Rules kept:

1. `append` only buffers; `sync` makes everything written so far durable with one
   fdatasync (group commit). Nothing is acknowledged before `sync` returns.
2. A new segment starts with the current hard state and snapshot marker and is fsync'd
   with its directory before use, so deleting older segments never loses either.
3. Whole segments are deleted only after a snapshot marker covering all of their entries
   is durable (at the `sync` after `mark_snapshot`), oldest first, never the current one.
   After compaction the oldest kept segment may start with entries after a hole; replay
   accepts a hole only if a later snapshot marker covers it.
4. On open, a torn tail of the LAST segment (a record cut short, or a bad final record
   followed only by zero bytes) is cut off at the last good record: it was never synced,
   so never acknowledged. A bad record anywhere else is corruption, and the member must
   refuse to start rather than lose acknowledged data silently: `WalCorruptError`.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from ..raft import Entry, HardState
from .raft_codec import (
    CodecError,
    entry_from_raw,
    entry_to_raw,
    guarded,
    hard_state_from_raw,
    hard_state_to_raw,
    pack,
    unpack,
)

ENTRIES, HARD_STATE, SNAPSHOT = 1, 2, 3
_RECORD_TYPES = frozenset({ENTRIES, HARD_STATE, SNAPSHOT})
_HEADER = struct.Struct("<IIB")
_LENGTH_CRC = struct.Struct("<II")
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
DEFAULT_SEGMENT_BYTES = 64 << 20
# fdatasync skips the metadata a read does not need (mtime), never the size an append
# grew: what etcd's WAL uses on Linux. Where it does not exist, fsync.
_datasync = getattr(os, "fdatasync", os.fsync)


class StorageError(Exception):
    """The durable state of this member cannot be used as it is on disk.

    StorageError
     +-- WalCorruptError        a WAL record other than a torn tail is damaged
     +-- SnapshotMismatchError  (storage.py) WAL and snapshot files disagree
    """


class WalCorruptError(StorageError):
    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(
            f"WAL corrupt: {path} at offset {offset}: {reason}; "
            "refusing to start (restore this member from a peer)"
        )
        self.path = path
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WalContents:
    """What replay found: the latest hard state, the snapshot marker, and the entries
    after the marker (contiguous from `snapshot_index + 1`)."""

    hard_state: HardState
    snapshot_index: int
    snapshot_term: int
    entries: list[Entry]
    truncated_bytes: int = 0


@dataclass(slots=True)
class _Segment:
    seq: int
    first_index: int
    path: Path
    max_index: int = 0  # highest entry index written into it (0: none)


def _segment_path(directory: Path, seq: int, first_index: int) -> Path:
    return directory / f"{seq:016x}-{first_index:016x}.wal"


def _record(rtype: int, payload: bytes) -> bytes:
    body = bytes((rtype,)) + payload
    return _LENGTH_CRC.pack(len(payload), zlib.crc32(body)) + body


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (created, renamed, deleted files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    """Create `directory` if absent, durably (fsync its parent)."""
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    fsync_dir(directory.parent)


# -- reading records ------------------------------------------------------------------------


def _valid_record_at(data: bytes, pos: int) -> int | None:
    """The end of a well-formed record starting at `pos`, or None."""
    if len(data) - pos < _HEADER.size:
        return None
    length, crc, rtype = _HEADER.unpack_from(data, pos)
    end = pos + _HEADER.size + length
    if rtype not in _RECORD_TYPES or end > len(data):
        return None
    return end if zlib.crc32(data[pos + 8 : end]) == crc else None


def _any_record_after(data: bytes, start: int) -> bool:
    # A length field damaged to point past EOF looks like a cut-short record; a good record
    # further on tells the two apart. Only runs on the (short) tail after a bad record.
    return any(_valid_record_at(data, p) is not None for p in range(start, len(data)))


def _scan(data: bytes, path: Path, is_last: bool) -> tuple[list[tuple[int, int, bytes]], int]:
    """Split one segment into (offset, type, payload) records; returns them and the end of
    the last good record. Raises WalCorruptError for damage that is not a torn tail."""
    records: list[tuple[int, int, bytes]] = []
    pos, size = 0, len(data)
    while pos < size:
        if size - pos < _HEADER.size:
            reason, torn = "short record header", True
        else:
            length, crc, rtype = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if end > size:
                reason = "record runs past the end of the file"
                torn = not _any_record_after(data, pos + 1)
            elif zlib.crc32(data[pos + 8 : end]) != crc:
                reason = "crc mismatch"
                torn = not any(data[end:])
            elif rtype not in _RECORD_TYPES:
                raise WalCorruptError(path, pos, f"unknown record type {rtype}")
            else:
                records.append((pos, rtype, data[pos + _HEADER.size : end]))
                pos = end
                continue
        if is_last and torn:
            return records, pos
        if is_last:
            reason += " followed by further data"
        raise WalCorruptError(path, pos, reason)
    return records, size


def _check_int(value: Any, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CodecError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _decode_entries(raw: Any) -> list[Entry]:
    if not isinstance(raw, list) or not raw:
        raise CodecError("an ENTRIES record holds a non-empty list")
    entries: list[Entry] = [guarded(entry_from_raw, r, "entry") for r in raw]
    for e in entries:
        _check_int(e.term, "entry term")
        _check_int(e.index, "entry index", 1)
        if not isinstance(e.data, bytes):
            raise CodecError(f"entry {e.index} data is not bytes")
    _check_contiguous(entries)
    return entries


def _check_contiguous(entries: Sequence[Entry]) -> None:
    for prev, e in itertools.pairwise(entries):
        if e.index != prev.index + 1:
            raise CodecError(f"entry indices not contiguous: {prev.index} then {e.index}")
        if e.term < prev.term:
            raise CodecError(f"entry terms go back: {prev.term} then {e.term} at {e.index}")


def _decode_hard_state(raw: Any) -> HardState:
    hs: HardState = guarded(hard_state_from_raw, raw, "hard state")
    _check_int(hs.term, "term")
    _check_int(hs.commit, "commit")
    if hs.vote is not None and not isinstance(hs.vote, str):
        raise CodecError(f"vote must be a member id or nil, got {hs.vote!r}")
    return hs


def _decode_marker(raw: Any) -> tuple[int, int]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise CodecError("a SNAPSHOT record holds [index, term]")
    return _check_int(raw[0], "snapshot index"), _check_int(raw[1], "snapshot term")


# -- replay ---------------------------------------------------------------------------------


class _Replay:
    """The log as the records so far describe it: a base (snapshot marker) and entries."""

    def __init__(self, base_known: bool) -> None:
        self.base_index = 0
        self.base_term = 0
        # False while entries follow a hole left by deleted segments: a later marker must
        # cover the hole, or replay fails.
        self.base_known = base_known
        self.entries: list[Entry] = []
        self.hard_state = HardState()

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base_index

    def term_at(self, index: int) -> int | None:
        if index == self.base_index:
            return self.base_term if self.base_known else None
        first = self.base_index + 1
        if first <= index <= self.last_index:
            return self.entries[index - first].term
        return None

    def add_entries(self, new: list[Entry]) -> None:
        first = new[0].index
        if self.base_known and first <= self.base_index:
            new = [e for e in new if e.index > self.base_index]
            if not new:
                return
            first = new[0].index
        if first > self.last_index + 1 or first <= self.base_index:
            # A hole (earlier segments deleted), or an overwrite reaching into one.
            self.entries = list(new)
            self.base_index, self.base_term, self.base_known = first - 1, 0, False
            return
        del self.entries[first - self.base_index - 1 :]
        before = self.term_at(first - 1)
        if before is not None and new[0].term < before:
            raise CodecError(f"entry {first} has term {new[0].term} below {before} before it")
        self.entries.extend(new)

    def mark(self, index: int, term: int) -> None:
        if index < self.base_index:
            if self.base_known:
                raise CodecError(f"snapshot marker {index} goes back from {self.base_index}")
            # Written before the segments behind the hole were deleted (a new segment's
            # copy of the marker then in force): it says nothing about the hole.
            return
        if self.term_at(index) == term or (not self.base_known and index == self.base_index):
            del self.entries[: index - self.base_index]
        else:
            self.entries = []
        self.base_index, self.base_term, self.base_known = index, term, True

    def apply(self, rtype: int, payload: bytes) -> list[Entry] | None:
        """Apply one record; returns the entries of an ENTRIES record."""
        try:
            raw = unpack(payload)
        except (ValueError, msgpack.UnpackException) as error:
            raise CodecError(f"undecodable payload: {error}") from error
        if rtype == ENTRIES:
            entries = _decode_entries(raw)
            self.add_entries(entries)
            return entries
        if rtype == HARD_STATE:
            self.hard_state = _decode_hard_state(raw)
        else:
            self.mark(*_decode_marker(raw))
        return None


# -- the log --------------------------------------------------------------------------------


class WriteAheadLog:
    """An open WAL directory. Not thread-safe: one driver owns it.

    `syncs` counts fsyncs of segment data (group commits plus the ones rotation needs).
    """

    def __init__(
        self,
        directory: Path,
        segments: list[_Segment],
        *,
        segment_bytes: int,
        hard_state: HardState,
        marker: tuple[int, int],
        last_index: int,
    ) -> None:
        self.directory = directory
        self.syncs = 0
        self._segment_bytes = segment_bytes
        self._segments = segments
        self._hard_state = hard_state
        self._marker = marker
        self._last_index = last_index
        self._compact_to: int | None = None
        self._dirty = False
        current = segments[-1]
        self._file: BinaryIO | None = open(current.path, "ab")  # noqa: SIM115 - kept open
        self._size = self._file.tell()

    @classmethod
    def open(
        cls, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> tuple[WriteAheadLog, WalContents]:
        """Open (creating if absent) and replay the log; see the module rules for recovery."""
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be >= 1")
        ensure_dir(directory)
        segments = _list_segments(directory)
        replay = _Replay(base_known=not segments or segments[0].seq == 0)
        truncated = 0
        for i, seg in enumerate(segments):
            is_last = i == len(segments) - 1
            data = seg.path.read_bytes()
            records, good_end = _scan(data, seg.path, is_last)
            for offset, rtype, payload in records:
                try:
                    entries = replay.apply(rtype, payload)
                except CodecError as error:
                    raise WalCorruptError(seg.path, offset, str(error)) from error
                if entries:
                    seg.max_index = max(seg.max_index, entries[-1].index)
            if good_end < len(data):
                _truncate(seg.path, good_end)
                truncated = len(data) - good_end
        if not replay.base_known:
            first = segments[0]
            raise WalCorruptError(
                first.path,
                0,
                f"entries up to {replay.base_index} are missing and no snapshot covers them",
            )
        if replay.hard_state.commit > replay.last_index:
            raise WalCorruptError(
                segments[-1].path,
                0,
                f"hard state commits {replay.hard_state.commit} "
                f"beyond the last entry {replay.last_index}",
            )
        if not segments:
            segments = [_create_segment(directory, 0, 1, b"")]
        wal = cls(
            directory,
            segments,
            segment_bytes=segment_bytes,
            hard_state=replay.hard_state,
            marker=(replay.base_index, replay.base_term),
            last_index=replay.last_index,
        )
        contents = WalContents(
            hard_state=replay.hard_state,
            snapshot_index=replay.base_index,
            snapshot_term=replay.base_term,
            entries=replay.entries,
            truncated_bytes=truncated,
        )
        return wal, contents

    # -- writing ----------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        """Buffer entries (replacing stored ones from entries[0].index on), then the hard
        state. Durable only after the next `sync`."""
        if entries:
            _check_contiguous(entries)
            first = entries[0].index
            if first > self._last_index + 1 or first <= self._marker[0]:
                raise ValueError(
                    f"entries from {first} do not fit a log with snapshot at "
                    f"{self._marker[0]} and last index {self._last_index}"
                )
            self._write(ENTRIES, pack([entry_to_raw(e) for e in entries]))
            current = self._segments[-1]
            current.max_index = max(current.max_index, entries[-1].index)
            self._last_index = entries[-1].index
        if hard_state is not None:
            self._write(HARD_STATE, pack(hard_state_to_raw(hard_state)))
            self._hard_state = hard_state
        self._maybe_rotate()

    def buffers(self, nbytes: int) -> bool:
        """Whether a record with an `nbytes` payload appended now stays in the current
        segment, so no rotation (which fsyncs) is due: for callers that must not block."""
        return self._size + _HEADER.size + nbytes < self._segment_bytes

    def mark_snapshot(self, index: int, term: int) -> None:
        """Record that the log is compacted to a durable snapshot at (index, term).

        Segments holding only entries <= index are deleted at the next `sync`, once this
        marker is durable. The snapshot itself must already be durable elsewhere.
        """
        if index < self._marker[0]:
            raise ValueError(f"snapshot {index} is older than the marker at {self._marker[0]}")
        self._write(SNAPSHOT, pack([index, term]))
        self._marker = (index, term)
        self._last_index = max(self._last_index, index)
        self._compact_to = index
        self._maybe_rotate()

    def sync(self) -> None:
        """Make every record written so far durable (one fsync), then drop segments a
        durable snapshot marker made obsolete."""
        f = self._open_file()
        if self._dirty:
            f.flush()
            _datasync(f.fileno())
            self.syncs += 1
            self._dirty = False
        if self._compact_to is not None:
            self._drop_segments(self._compact_to)
            self._compact_to = None

    def close(self) -> None:
        if self._file is None:
            return
        self.sync()
        self._file.close()
        self._file = None

    # -- inspection -------------------------------------------------------------------------

    @property
    def segment_paths(self) -> list[Path]:
        return [s.path for s in self._segments]

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def last_index(self) -> int:
        return self._last_index

    # -- internals --------------------------------------------------------------------------

    def _open_file(self) -> BinaryIO:
        if self._file is None:
            raise ValueError("the WAL is closed")
        return self._file

    def _write(self, rtype: int, payload: bytes) -> None:
        record = _record(rtype, payload)
        self._open_file().write(record)
        self._size += len(record)
        self._dirty = True

    def _maybe_rotate(self) -> None:
        if self._size < self._segment_bytes:
            return
        f = self._open_file()
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self.syncs += 1
        self._dirty = False
        head = _record(HARD_STATE, pack(hard_state_to_raw(self._hard_state))) + _record(
            SNAPSHOT, pack(list(self._marker))
        )
        seg = _create_segment(
            self.directory, self._segments[-1].seq + 1, self._last_index + 1, head
        )
        self.syncs += 1
        self._segments.append(seg)
        self._file = open(seg.path, "ab")  # noqa: SIM115 - kept open
        self._size = len(head)

    def _drop_segments(self, index: int) -> None:
        while len(self._segments) > 1 and self._segments[0].max_index <= index:
            self._segments.pop(0).path.unlink()
            # One at a time, oldest first: a crash leaves a run of segments with no hole.
            fsync_dir(self.directory)


def _create_segment(directory: Path, seq: int, first_index: int, head: bytes) -> _Segment:
    path = _segment_path(directory, seq, first_index)
    with open(path, "xb") as f:
        f.write(head)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(directory)
    return _Segment(seq=seq, first_index=first_index, path=path)


def _list_segments(directory: Path) -> list[_Segment]:
    segments: list[_Segment] = []
    for path in directory.iterdir():
        if path.suffix != ".wal":
            continue
        match = _SEGMENT_NAME.match(path.name)
        if match is None:
            raise WalCorruptError(path, 0, "not a segment file name")
        segments.append(_Segment(int(match[1], 16), int(match[2], 16), path))
    segments.sort(key=lambda s: s.seq)
    for prev, seg in itertools.pairwise(segments):
        if seg.seq != prev.seq + 1:
            raise WalCorruptError(seg.path, 0, f"segment {prev.seq + 1:016x} is missing")
    return segments


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "StorageError",
    "WalContents",
    "WalCorruptError",
    "WriteAheadLog",
    "fsync_dir",
]
