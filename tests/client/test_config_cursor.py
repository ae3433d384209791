"""The config watch cursor: frames become updates once each, and reopening resumes."""

from __future__ import annotations

import json

import pytest

from shoal.client import ConfigUpdate, WatchClosed, WatchCompacted
from shoal.client.config import ConfigCursor
from shoal.client.sse import SseComment, SseMessage
from shoal.config import ItemId


def frame(revision: int, version: int, content: str, beta: bool = False) -> SseMessage:
    data = {
        "namespace": "prod",
        "name": "a",
        "version": version,
        "beta": beta,
        "content": content,
        "format": "json",
        "sha256": f"h{version}{beta}{content}",
        "author": "me",
        "time": 1.0,
        "message": "",
    }
    return SseMessage(event="config", data=json.dumps(data), id=str(revision))


def test_updates_carry_content_and_advance_the_resume_point() -> None:
    cursor = ConfigCursor(ItemId("prod", "a"), {"zone": "eu", "a": "1"})
    first = cursor.request()
    assert first.path == "/api/v1/config/prod/a/watch"
    assert first.params == (("labels.a", "1"), ("labels.zone", "eu"))
    assert cursor.handle(SseComment("watching prod/a from revision 4")) is None
    update = cursor.handle(frame(3, 1, '{"n": 1}'))
    assert isinstance(update, ConfigUpdate) and update.value == {"n": 1}
    assert ("start_revision", "4") in cursor.request().params
    deleted = cursor.handle(SseMessage(event="deleted", data="{}", id="9"))
    assert deleted is not None and deleted.deleted and deleted.value is None
    assert ("start_revision", "10") in cursor.request().params


def test_a_relist_after_compaction_does_not_repeat_the_same_content() -> None:
    cursor = ConfigCursor(ItemId("prod", "a"))
    assert cursor.handle(frame(5, 2, "{}")) is not None
    cursor.restart()
    assert all(k != "start_revision" for k, _ in cursor.request().params)
    assert cursor.handle(frame(50, 2, "{}")) is None  # same version and hash: nothing new
    assert cursor.handle(frame(51, 3, "{}")) is not None


def test_error_frames_raise_what_the_server_said() -> None:
    cursor = ConfigCursor(ItemId("prod", "a"))
    compacted = json.dumps({"error": "compacted", "message": "gone", "compact_revision": 7})
    with pytest.raises(WatchCompacted):
        cursor.handle(SseMessage(event="error", data=compacted, id=None))
    with pytest.raises(WatchClosed, match="slow"):
        cursor.handle(SseMessage(event="error", data='{"message": "too slow"}', id=None))
