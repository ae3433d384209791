"""Reading the built-in backend's keys back into values: a stored message, where a
group starts, a group's members/claims/offsets. Pure: it only parses what it is given."""

from __future__ import annotations

import json

from shoal.client import KeyValue

from .errors import InvalidEvent
from .model import MAX_PARTITIONS, Layout, Message, decode_record, first_offset_after

__all__ = ["group_start", "message_of", "split_group"]


def message_of(layout: Layout, kv: KeyValue) -> Message | None:
    """The message stored in `kv` (its offset: from the key's create revision and its
    place in that write, `model.offset_for`), or None when `kv` is not a message here."""
    parsed = layout.parse_message_key(kv.key)
    if parsed is None or parsed[0] >= MAX_PARTITIONS:
        return None
    try:
        return decode_record(layout.topic, parsed[0], kv.create_revision, kv.value)
    except InvalidEvent:
        return None


def group_start(meta: KeyValue) -> int:
    """Where a group with no committed offset begins: right after it was created
    ("latest"), or at the first retained message ("earliest")."""
    try:
        start = json.loads(meta.value).get("start", "latest")
    except (ValueError, AttributeError):
        start = "latest"
    return 0 if start == "earliest" else first_offset_after(meta.create_revision)


def split_group(
    layout: Layout, group: str, keys: list[KeyValue]
) -> tuple[tuple[str, ...], dict[int, str], dict[int, int]]:
    """(members, claims partition -> member, committed offsets partition -> offset)."""
    members: list[str] = []
    claims: dict[int, str] = {}
    offsets: dict[int, int] = {}
    for kv in keys:
        parsed = layout.parse_group_key(group, kv.key)
        if parsed is None:
            continue
        kind, name = parsed
        if kind == "members":
            members.append(name)
        elif name.isdigit() and kind == "claims":
            claims[int(name)] = kv.value
        elif name.isdigit() and kind == "offsets" and kv.value.isdigit():
            offsets[int(name)] = int(kv.value)
    return tuple(sorted(members)), claims, offsets
