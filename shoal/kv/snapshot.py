"""Snapshots of the KV state machine: the current state as bytes, and back.

Theory of operation: a snapshot holds the current revision, every lease's replicated
state (id, TTL, checkpointed remaining TTL) and every live key with its revisions,
version and lease -- not the MVCC history or the event log. So after `restore` the
compacted revision equals the snapshot's revision (as in etcd after a snapshot install):
reads at that revision work, and watches resume from revision + 1. Leader-local lease
expiries are not in it either; the restored lease table is not primary until promoted.

Format (big-endian, all lengths explicit so nothing is parsed by guessing)::

    header  8s magic "SHOALKV1" | q revision | I lease count | I key count
    lease   q id | q ttl | B has_checkpoint | d checkpoint
    key     I key length | I value length | q create | q mod | q version | q lease
            | key bytes | value bytes
    trailer I crc32 of everything before it

Never: do I/O (the node writes the bytes to a file), or accept bytes that do not
decode exactly -- a short, long or corrupted snapshot raises `SnapshotCorrupt`.
"""

from __future__ import annotations

import struct
import zlib

from .errors import SnapshotCorrupt
from .keys import TO_END
from .leases import LeaseState
from .store import KeyValueStore
from .types import KeyValue

MAGIC = b"SHOALKV1"
_HEADER = struct.Struct(">8sqII")
_LEASE = struct.Struct(">qqBd")
_KEY = struct.Struct(">IIqqqq")
_CRC = struct.Struct(">I")


def snapshot(store: KeyValueStore) -> bytes:
    """Encode the store's current state (see the module docstring for what is kept)."""
    leases = store.leases.states()
    kvs = store.range(b"\x00", TO_END).kvs
    parts = [_HEADER.pack(MAGIC, store.revision, len(leases), len(kvs))]
    for lease in leases:
        has = lease.checkpoint is not None
        parts.append(_LEASE.pack(lease.id, lease.ttl, has, lease.checkpoint if has else 0.0))
    for kv in kvs:
        parts.append(
            _KEY.pack(
                len(kv.key),
                len(kv.value),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.lease,
            )
        )
        parts.append(kv.key)
        parts.append(kv.value)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def restore(data: bytes) -> KeyValueStore:
    """Decode a snapshot into a new store; raises `SnapshotCorrupt` on any inconsistency."""
    if len(data) < _HEADER.size + _CRC.size:
        raise SnapshotCorrupt(f"snapshot is {len(data)} bytes, too short for a header")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise SnapshotCorrupt("snapshot checksum mismatch")
    magic, revision, n_leases, n_keys = _HEADER.unpack_from(body, 0)
    if magic != MAGIC:
        raise SnapshotCorrupt(f"unknown snapshot format {magic!r}, expected {MAGIC!r}")
    offset = _HEADER.size
    try:
        leases = []
        for _ in range(n_leases):
            lease_id, ttl, has, checkpoint = _LEASE.unpack_from(body, offset)
            offset += _LEASE.size
            leases.append(LeaseState(id=lease_id, ttl=ttl, checkpoint=checkpoint if has else None))
        kvs = []
        for _ in range(n_keys):
            klen, vlen, create, mod, version, lease = _KEY.unpack_from(body, offset)
            offset += _KEY.size
            end = offset + klen + vlen
            if end > len(body):
                raise SnapshotCorrupt(f"key record at offset {offset} runs past the end")
            key, value = body[offset : offset + klen], body[offset + klen : end]
            offset = end
            kvs.append(
                KeyValue(
                    key=key,
                    value=value,
                    create_revision=create,
                    mod_revision=mod,
                    version=version,
                    lease=lease,
                )
            )
    except struct.error as exc:
        raise SnapshotCorrupt(f"snapshot truncated at offset {offset}: {exc}") from exc
    if offset != len(body):
        raise SnapshotCorrupt(f"{len(body) - offset} unexpected bytes after the last record")
    return KeyValueStore.restored(revision=revision, kvs=kvs, leases=leases)
