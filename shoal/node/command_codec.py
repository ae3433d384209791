"""Bytes for KV commands as they travel in Raft log entries.

A command is a msgpack array `[code, ...fields]`. Entries are decoded on every member
when applied, so the format must stay stable: add new codes, never renumber.
"""

from __future__ import annotations

from typing import Any

from ..kv import (
    Command,
    Compact,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    LeaseCheckpoint,
    LeaseCheckpoints,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    Txn,
)
from .raft_codec import CodecError, pack, unpack

_PUT, _DELETE, _TXN, _GRANT, _REVOKE, _CHECKPOINT, _COMPACT, _RANGE, _CHECKPOINTS = range(9)
_TARGETS = list(CompareTarget)
_OPS = list(CompareOp)


def _op_to_raw(op: Put | Delete | Range) -> list[Any]:
    if isinstance(op, Put):
        return [_PUT, op.key, op.value, op.lease, op.prev_kv]
    if isinstance(op, Delete):
        return [_DELETE, op.key, op.range_end, op.prev_kv]
    return [_RANGE, op.key, op.range_end, op.limit]


def _op_from_raw(raw: list[Any]) -> Put | Delete | Range:
    code = raw[0]
    if code == _PUT:
        return Put(key=raw[1], value=raw[2], lease=raw[3], prev_kv=raw[4])
    if code == _DELETE:
        return Delete(key=raw[1], range_end=raw[2], prev_kv=raw[3])
    if code == _RANGE:
        return Range(key=raw[1], range_end=raw[2], limit=raw[3])
    raise CodecError(f"unknown txn op code {code!r}")


def command_to_raw(command: Command) -> list[Any]:
    if isinstance(command, Put | Delete):
        return _op_to_raw(command)
    if isinstance(command, Txn):
        compares = [
            [c.key, _TARGETS.index(c.target), _OPS.index(c.op), c.value] for c in command.compares
        ]
        return [
            _TXN,
            compares,
            [_op_to_raw(op) for op in command.success],
            [_op_to_raw(op) for op in command.failure],
        ]
    if isinstance(command, LeaseGrant):
        return [_GRANT, command.id, command.ttl_seconds]
    if isinstance(command, LeaseRevoke):
        return [_REVOKE, command.id]
    if isinstance(command, LeaseCheckpoint):
        return [_CHECKPOINT, command.id, command.remaining_seconds]
    if isinstance(command, LeaseCheckpoints):
        return [_CHECKPOINTS, [[c.id, c.remaining_seconds] for c in command.checkpoints]]
    if isinstance(command, Compact):
        return [_COMPACT, command.revision]
    raise TypeError(f"not a KV command: {command!r}")


def command_from_raw(raw: list[Any]) -> Command:
    code = raw[0]
    if code in (_PUT, _DELETE):
        op = _op_from_raw(raw)
        assert not isinstance(op, Range)
        return op
    if code == _TXN:
        compares = tuple(
            Compare(key=k, target=_TARGETS[t], op=_OPS[o], value=v) for k, t, o, v in raw[1]
        )
        return Txn(
            compares=compares,
            success=tuple(_op_from_raw(op) for op in raw[2]),
            failure=tuple(_op_from_raw(op) for op in raw[3]),
        )
    if code == _GRANT:
        return LeaseGrant(id=raw[1], ttl_seconds=raw[2])
    if code == _REVOKE:
        return LeaseRevoke(id=raw[1])
    if code == _CHECKPOINT:
        return LeaseCheckpoint(id=raw[1], remaining_seconds=raw[2])
    if code == _CHECKPOINTS:
        return LeaseCheckpoints(
            checkpoints=tuple(LeaseCheckpoint(id=i, remaining_seconds=r) for i, r in raw[1])
        )
    if code == _COMPACT:
        return Compact(revision=raw[1])
    raise CodecError(f"unknown command code {code!r}")


def encode_command(command: Command) -> bytes:
    return pack(command_to_raw(command))


def decode_command(data: bytes) -> Command:
    try:
        return command_from_raw(unpack(data))
    except CodecError:
        raise
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise CodecError(f"malformed command: {error}") from error
