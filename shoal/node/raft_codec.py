"""Bytes for the Raft core's values: peer messages, log entries, hard state, snapshots.

msgpack arrays, positional, one type code per message class. The same encoding serves
the peer transport and the write-ahead log, so an entry is encoded once. Decoding input
from a peer or a file validates shapes and raises `CodecError` with what was wrong;
nothing malformed reaches the core.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgpack

from ..raft import (
    MESSAGE_TYPES,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    HardState,
    Message,
    Snapshot,
)


class CodecError(ValueError):
    """Bytes that do not decode into a valid Raft value (from a peer or a damaged file)."""


_OPS = list(ConfChangeOp)
_OP_CODE = {op: i for i, op in enumerate(_OPS)}
_CODE_OF = {cls: i for i, cls in enumerate(MESSAGE_TYPES)}
_FIELDS: dict[type[Message], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in MESSAGE_TYPES
}


def _conf(conf: ConfState) -> list[Any]:
    return [sorted(conf.voters), sorted(conf.learners)]


def _unconf(raw: Any) -> ConfState:
    voters, learners = raw
    return ConfState(voters=frozenset(voters), learners=frozenset(learners))


def entry_to_raw(e: Entry) -> list[Any]:
    if e.change is None:
        return [e.term, e.index, e.data]
    c = e.change
    return [e.term, e.index, e.data, [_OP_CODE[c.op], c.node, _conf(c.result), c.context]]


def entry_from_raw(raw: Any) -> Entry:
    if len(raw) == 3:
        return Entry(term=raw[0], index=raw[1], data=raw[2])
    op, node, result, context = raw[3]
    change = ConfChange(op=_OPS[op], node=node, result=_unconf(result), context=context)
    return Entry(term=raw[0], index=raw[1], data=raw[2], change=change)


def snapshot_to_raw(s: Snapshot) -> list[Any]:
    return [s.index, s.term, _conf(s.conf), s.data]


def snapshot_from_raw(raw: Any) -> Snapshot:
    index, term, conf, data = raw
    return Snapshot(index=index, term=term, conf=_unconf(conf), data=data)


def hard_state_to_raw(h: HardState) -> list[Any]:
    return [h.term, h.vote, h.commit]


def hard_state_from_raw(raw: Any) -> HardState:
    term, vote, commit = raw
    return HardState(term=term, vote=vote, commit=commit)


_SPECIAL_OUT: dict[str, Callable[[Any], Any]] = {
    "entries": lambda es: [entry_to_raw(e) for e in es],
    "snapshot": snapshot_to_raw,
}
_SPECIAL_IN: dict[str, Callable[[Any], Any]] = {
    "entries": lambda raw: tuple(entry_from_raw(e) for e in raw),
    "snapshot": snapshot_from_raw,
}


def message_to_raw(m: Message) -> list[Any]:
    cls = type(m)
    out: list[Any] = [_CODE_OF[cls]]
    for name in _FIELDS[cls]:
        value = getattr(m, name)
        convert = _SPECIAL_OUT.get(name)
        out.append(convert(value) if convert else value)
    return out


def message_from_raw(raw: Any) -> Message:
    code = raw[0]
    if not isinstance(code, int) or not 0 <= code < len(MESSAGE_TYPES):
        raise CodecError(f"unknown message type {code!r}")
    cls = MESSAGE_TYPES[code]
    names = _FIELDS[cls]
    if len(raw) != len(names) + 1:
        raise CodecError(f"{cls.__name__} needs {len(names)} fields, got {len(raw) - 1}")
    kwargs = {}
    for name, value in zip(names, raw[1:], strict=True):
        convert = _SPECIAL_IN.get(name)
        kwargs[name] = convert(value) if convert else value
    message: Message = cls(**kwargs)
    return message


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def encode_messages(messages: list[Message]) -> bytes:
    return pack([message_to_raw(m) for m in messages])


def decode_messages(data: bytes) -> list[Message]:
    """Decode a batch from a peer; any malformation raises CodecError."""
    try:
        return [message_from_raw(raw) for raw in unpack(data)]
    except CodecError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as error:
        raise CodecError(f"malformed message batch: {error}") from error


def guarded(decode: Callable[[Any], Any], raw: Any, what: str) -> Any:
    """Run a decoder over untrusted input, turning any shape error into CodecError."""
    try:
        return decode(raw)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise CodecError(f"malformed {what}: {error}") from error


__all__ = [
    "CodecError",
    "decode_messages",
    "encode_messages",
    "entry_from_raw",
    "entry_to_raw",
    "guarded",
    "hard_state_from_raw",
    "hard_state_to_raw",
    "message_from_raw",
    "message_to_raw",
    "pack",
    "snapshot_from_raw",
    "snapshot_to_raw",
    "unpack",
]
