"""What an event is, where it lives in the store, and what a topic is allowed to hold.

Theory of operation. A topic is a range of keys in the control plane's store (see
docs/events.md for why not a log beside it). Each topic has a fixed number of
partitions; a message goes to the partition its key hashes to (its id's, when it has no
key), so every message of one key is in one partition, and a partition is consumed by one
member of a group at a time: that is what keeps per-key order. A message is one key:

    /events/topics/{topic}                       the topic's settings (JSON, `TopicConfig`)
    /events/t/{topic}/{partition:04d}/{id}       one message (JSON record, below)
    /events/groups/{topic}/{group}               a consumer group: where it started
    /events/g/{topic}/{group}/members/{member}   a live consumer (on its lease)
    /events/g/{topic}/{group}/claims/{p:04d}     who consumes partition p (on its lease)
    /events/g/{topic}/{group}/offsets/{p:04d}    the group's committed offset in p

A message's *offset* is the revision that created its key: the store's revisions are
one total order, so offsets grow with publication order in every partition and cost
nothing to assign. Writing the same id again (a retried publish) rewrites the key but
keeps its create revision, so consumers see the same offset and skip it: an id is
deduplicated for as long as the message is retained.

Rules: no I/O, no clock, no randomness -- time comes in as arguments. Every limit is a
module constant and breaking one raises `PayloadTooLarge` naming it; every malformed
name raises `InvalidName` saying what is allowed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidEvent, InvalidName, PayloadTooLarge

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_ID_CHARS",
    "MAX_KEY_BYTES",
    "MAX_PARTITIONS",
    "MAX_PAYLOAD_BYTES",
    "Layout",
    "Message",
    "TopicConfig",
    "check_group",
    "check_id",
    "check_partitions_kept",
    "check_publish",
    "check_topic",
    "decode_record",
    "encode_record",
    "partition_for",
]

MAX_PAYLOAD_BYTES = 256 * 1024  # far below the store's 1 MiB value limit, even in base64
MAX_KEY_BYTES = 256
MAX_ID_CHARS = 128
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8 * 1024
MAX_PARTITIONS = 64  # a commit guards every partition a member owns in one transaction
# An offset is the publishing revision times 128 plus the message's place in that
# revision's transaction (a store transaction holds at most 128 operations), so messages
# published together in one batched write still get distinct, ordered offsets.
OFFSET_SLOTS = 128

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_HEADER = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidName(
            f"{what} {value!r} is malformed: 1-128 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return value


def check_topic(topic: object) -> str:
    return _check_name(topic, "topic")


def check_group(group: object) -> str:
    return _check_name(group, "group")


def check_id(message_id: object) -> str:
    if not isinstance(message_id, str) or not _ID.fullmatch(message_id):
        raise InvalidName(
            f"message id {message_id!r} is malformed: 1-{MAX_ID_CHARS} characters of "
            "A-Z a-z 0-9 . _ : @ -"
        )
    return message_id


def check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise InvalidName(f"key must be a non-empty string or None, got {key!r}")
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        raise PayloadTooLarge(f"key is {size} bytes; the limit is {MAX_KEY_BYTES} (MAX_KEY_BYTES)")
    return key


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidName(f"headers must be a mapping of str to str, got {type(headers).__name__}")
    if len(headers) > MAX_HEADERS:
        raise PayloadTooLarge(f"{len(headers)} headers; the limit is {MAX_HEADERS} (MAX_HEADERS)")
    size = 0
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER.fullmatch(name):
            raise InvalidName(f"header name {name!r} is malformed: 1-64 of A-Z a-z 0-9 . _ -")
        if not isinstance(value, str):
            raise InvalidName(f"header {name!r} must be a string, got {type(value).__name__}")
        size += len(name) + len(value.encode())
    if size > MAX_HEADER_BYTES:
        raise PayloadTooLarge(
            f"headers are {size} bytes; the limit is {MAX_HEADER_BYTES} (MAX_HEADER_BYTES)"
        )
    return dict(headers)


def check_payload(payload: object) -> bytes | str:
    if isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    if not isinstance(payload, bytes | str):
        raise InvalidEvent(
            f"payload must be bytes or str, got {type(payload).__name__} "
            "(serialise it first, e.g. json.dumps)"
        )
    size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} (MAX_PAYLOAD_BYTES)"
        )
    return payload


def check_publish(
    payload: object, key: object, headers: Mapping[str, str] | None, message_id: object
) -> tuple[bytes | str, str | None, dict[str, str], str | None]:
    """A publish's parts, checked before anything is written (every backend): payload,
    key, headers and id (None: the backend makes one)."""
    checked_id = check_id(message_id) if message_id is not None else None
    return check_payload(payload), check_key(key), check_headers(headers), checked_id


def check_partitions_kept(topic: str, existing: TopicConfig, asked: TopicConfig) -> None:
    """A topic's partition count is fixed at creation: refuse a different one."""
    if existing.partitions != asked.partitions:
        raise InvalidEvent(
            f"topic {topic!r} has {existing.partitions} partitions; the count is "
            f"fixed at creation (asked for {asked.partitions})"
        )


def offset_for(revision: int, index: int = 0) -> int:
    """The offset of the `index`-th message written at store revision `revision`."""
    return revision * OFFSET_SLOTS + index


def first_offset_after(revision: int) -> int:
    """The lowest offset a message published after `revision` can have."""
    return offset_for(revision + 1)


def partition_for(key: str | None, message_id: str, partitions: int) -> int:
    """The partition of a message: its key's (so a key keeps one order), else its id's
    (so a retried publish with the same id lands on the same key and is deduplicated)."""
    basis = key if key is not None else message_id
    return zlib.crc32(basis.encode()) % partitions


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One delivered message. `offset` orders a partition (the store revision that
    published it); `attempt` is 1 on the first delivery to a group, 2 on the next..."""

    topic: str
    partition: int
    offset: int
    id: str
    payload: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timestamp: float = 0.0
    attempt: int = 1

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicConfig:
    """A topic's settings, fixed when it is created (`partitions`) or changeable later.

    `retention_seconds` / `retention_bytes` (per partition, None: no size limit) bound what
    is kept; `max_attempts` deliveries fail before a message goes to `dead_letter` (default
    `{topic}.dead`); a failed delivery is retried after `retry_delay` seconds, doubling up
    to `max_retry_delay`, unless the handler's nack names its own delay.
    """

    partitions: int = 8
    retention_seconds: float = 7 * 24 * 3600.0
    retention_bytes: int | None = None
    max_attempts: int = 5
    dead_letter: str | None = None
    retry_delay: float = 0.5
    max_retry_delay: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int):
            raise InvalidEvent(f"partitions must be an int, got {self.partitions!r}")
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise InvalidEvent(f"partitions must be 1-{MAX_PARTITIONS}, got {self.partitions}")
        if not self.retention_seconds > 0:
            raise InvalidEvent(f"retention_seconds must be > 0, got {self.retention_seconds}")
        if self.retention_bytes is not None and self.retention_bytes < 1:
            raise InvalidEvent(f"retention_bytes must be >= 1, got {self.retention_bytes}")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidEvent(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise InvalidEvent(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.dead_letter is not None:
            check_topic(self.dead_letter)
        if not 0 <= self.retry_delay <= self.max_retry_delay:
            raise InvalidEvent("need 0 <= retry_delay <= max_retry_delay")

    def dead_letter_topic(self, topic: str) -> str:
        return self.dead_letter or f"{topic}.dead"

    def backoff(self, attempt: int) -> float:
        """Seconds before redelivering after failed attempt number `attempt` (1-based)."""
        delay = self.retry_delay * 2.0 ** max(0, attempt - 1)
        return float(min(delay, self.max_retry_delay))

    def to_json(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "retention_seconds": self.retention_seconds,
            "retention_bytes": self.retention_bytes,
            "max_attempts": self.max_attempts,
            "dead_letter": self.dead_letter,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TopicConfig:
        known = {k: data[k] for k in cls().to_json() if k in data}
        return cls(**known)


# -- records ----------------------------------------------------------------------------


def encode_record(
    message_id: str,
    payload: bytes | str,
    key: str | None,
    headers: Mapping[str, str],
    timestamp: float,
    index: int = 0,
) -> str:
    """The stored form of a message: compact JSON, text kept as text, bytes as base64;
    `index` is its place in a batched write (see `offset_for`)."""
    record: dict[str, Any] = {"id": message_id, "t": round(timestamp, 6)}
    if index:
        record["i"] = index
    if key is not None:
        record["k"] = key
    if headers:
        record["h"] = dict(headers)
    if isinstance(payload, str):
        record["s"] = payload
    else:
        record["b"] = base64.b64encode(payload).decode()
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def decode_record(
    topic: str, partition: int, revision: int, text: str, *, batched: bool = True
) -> Message:
    """The message stored as `text`, created at store revision `revision` (`batched`:
    its offset is `offset_for(revision, its index)`; else `revision` is the offset, as
    the Redis adapter's stream ids are); raises InvalidEvent if it is not one of ours."""
    offset = revision
    try:
        record = json.loads(text)
        index = record.get("i", 0)
        if not isinstance(index, int) or not 0 <= index < OFFSET_SLOTS:
            raise ValueError(f"bad batch index {index!r}")
        if batched:
            offset = offset_for(revision, index)
        if "s" in record:
            payload = str(record["s"]).encode()
        else:
            payload = base64.b64decode(record["b"], validate=True)
        headers = record.get("h") or {}
        return Message(
            topic=topic,
            partition=partition,
            offset=offset,
            id=str(record["id"]),
            payload=payload,
            key=record.get("k"),
            headers={str(k): str(v) for k, v in headers.items()},
            timestamp=float(record.get("t", 0.0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
        raise InvalidEvent(f"not an event record at revision {revision}: {error}") from None


# -- key layout -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a topic and one group of it live in the store (see the module docstring)."""

    topic: str
    root: str = "/events"

    @property
    def config_key(self) -> str:
        return f"{self.root}/topics/{self.topic}"

    @property
    def messages_prefix(self) -> str:
        return f"{self.root}/t/{self.topic}/"

    def partition_prefix(self, partition: int) -> str:
        return f"{self.messages_prefix}{partition:04d}/"

    def message_key(self, partition: int, message_id: str) -> str:
        return f"{self.partition_prefix(partition)}{message_id}"

    def parse_message_key(self, key: str) -> tuple[int, str] | None:
        """(partition, id) of a message key of this topic, None for any other key."""
        if not key.startswith(self.messages_prefix):
            return None
        rest = key[len(self.messages_prefix) :]
        number, slash, message_id = rest.partition("/")
        if not slash or len(number) != 4 or not number.isdigit() or not message_id:
            return None
        return int(number), message_id

    def group_key(self, group: str) -> str:
        return f"{self.root}/groups/{self.topic}/{group}"

    @property
    def groups_prefix(self) -> str:
        return f"{self.root}/groups/{self.topic}/"

    def group_prefix(self, group: str) -> str:
        return f"{self.root}/g/{self.topic}/{group}/"

    def member_key(self, group: str, member: str) -> str:
        return f"{self.group_prefix(group)}members/{member}"

    def claim_key(self, group: str, partition: int) -> str:
        return f"{self.group_prefix(group)}claims/{partition:04d}"

    def offset_key(self, group: str, partition: int) -> str:
        return f"{self.group_prefix(group)}offsets/{partition:04d}"

    def parse_group_key(self, group: str, key: str) -> tuple[str, str] | None:
        """("members", id) | ("claims", "0003") | ("offsets", "0003") for a group's key."""
        prefix = self.group_prefix(group)
        if not key.startswith(prefix):
            return None
        kind, slash, name = key[len(prefix) :].partition("/")
        if not slash or kind not in ("members", "claims", "offsets") or not name:
            return None
        return kind, name
