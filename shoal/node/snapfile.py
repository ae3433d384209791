"""Snapshot files of one member: saved atomically, the newest two kept, damage detected.

Theory of operation. A snapshot lives in `{term:016x}-{index:016x}.snap`, whose bytes are

    MAGIC (8 bytes) | u32 crc32(payload), little endian | payload = msgpack(snapshot_to_raw)

`save` writes a temporary file, fsyncs it, renames it into place and fsyncs the directory,
so a crash leaves either the old set of files or the new one, plus at worst a temporary
file that the next `load_newest` removes. Two snapshots are kept so that a damaged newest
file can fall back to the one before; the caller decides whether that older one is still
usable (the WAL may already be compacted past it).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack

from ..raft import Snapshot
from .raft_codec import CodecError, guarded, pack, snapshot_from_raw, snapshot_to_raw, unpack
from .wal import ensure_dir, fsync_dir

MAGIC = b"SHOALSN1"
_CRC = struct.Struct("<I")
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
_TEMP_SUFFIX = ".tmp"


class _Damaged(Exception):
    pass


class SnapshotFiles:
    """The snapshot directory of one member. `skipped` lists the (path, reason) of every
    damaged file the last `load_newest` passed over."""

    def __init__(self, directory: Path, *, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.directory = directory
        self.keep = keep
        self.skipped: list[tuple[Path, str]] = []

    def save(self, snapshot: Snapshot) -> Path:
        """Write `snapshot` durably and atomically; drop all but the newest `keep` files."""
        ensure_dir(self.directory)
        payload = pack(snapshot_to_raw(snapshot))
        path = self.directory / f"{snapshot.term:016x}-{snapshot.index:016x}.snap"
        temp = path.with_name(path.name + _TEMP_SUFFIX)
        with open(temp, "wb") as f:
            f.write(MAGIC + _CRC.pack(zlib.crc32(payload)) + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        fsync_dir(self.directory)
        for old in self._files()[self.keep :]:
            old.unlink()
        return path

    def load_newest(self) -> Snapshot | None:
        """The newest snapshot that reads back intact, or None if there is none."""
        self.skipped = []
        if not self.directory.is_dir():
            return None
        for temp in self.directory.glob("*" + _TEMP_SUFFIX):
            temp.unlink()  # a save that crashed before its rename
        for path in self._files():
            try:
                return _read(path)
            except _Damaged as error:
                self.skipped.append((path, str(error)))
        return None

    def _files(self) -> list[Path]:
        """Snapshot files, newest first."""
        found: list[tuple[int, int, Path]] = []
        if not self.directory.is_dir():
            return []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match is not None:
                found.append((int(match[2], 16), int(match[1], 16), path))
        found.sort(reverse=True)
        return [path for _, _, path in found]


def _read(path: Path) -> Snapshot:
    data = path.read_bytes()
    head = len(MAGIC) + _CRC.size
    if len(data) < head or not data.startswith(MAGIC):
        raise _Damaged("not a snapshot file (bad magic or too short)")
    (crc,) = _CRC.unpack_from(data, len(MAGIC))
    payload = data[head:]
    if zlib.crc32(payload) != crc:
        raise _Damaged("crc mismatch")
    try:
        raw: Any = unpack(payload)
        snapshot: Snapshot = guarded(snapshot_from_raw, raw, "snapshot")
    except (CodecError, ValueError, msgpack.UnpackException) as error:
        raise _Damaged(f"undecodable: {error}") from error
    name = f"{snapshot.term:016x}-{snapshot.index:016x}.snap"
    if path.name != name:
        raise _Damaged(f"holds term {snapshot.term} index {snapshot.index}, not its name's")
    if not isinstance(snapshot.data, bytes):
        raise _Damaged("snapshot data is not bytes")
    return snapshot


__all__ = ["MAGIC", "SnapshotFiles"]
