"""The sans-IO core: requests built, answers parsed, errors mapped, retries planned."""

from __future__ import annotations

import json

import pytest

from shoal.client import protocol as ops
from shoal.client.errors import (
    BadRequest,
    Compacted,
    NotFound,
    ShoalError,
    Unavailable,
    WatchClosed,
    WatchCompacted,
)
from shoal.client.sse import SseComment, SseMessage
from shoal.client.types import KeyValue

KV = {
    "key": "a/b",
    "value": "1",
    "create_revision": 2,
    "mod_revision": 3,
    "version": 2,
    "lease": None,
}


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_put_request_and_answer() -> None:
    call = ops.put("a/b c", "v", lease=7, prev_kv=True)
    assert call.request == ops.Request(
        "PUT", "/api/v1/kv/a/b%20c", (), {"value": "v", "lease": 7, "prev_kv": True}
    )
    assert ops.finish(call, 200, body({"revision": 9})) == 9
    assert ops.put("k", "v").request.json == {"value": "v"}


def test_empty_key_is_refused_locally() -> None:
    with pytest.raises(ValueError):
        ops.put("", "v")


def test_get_parses_keyvalue_and_maps_missing_key_to_none() -> None:
    call = ops.get("a/b", "stale")
    assert call.request.params == (("consistency", "stale"),)
    assert ops.get("a").request.params == ()
    assert ops.finish(call, 200, body({**KV, "revision": 4})) == KeyValue(
        key="a/b", value="1", create_revision=2, mod_revision=3, version=2, lease=None
    )
    missing = body({"error": "key_not_found", "message": "no key 'a/b'"})
    assert ops.finish(call, 404, missing) is None
    with pytest.raises(NotFound):  # a 404 that is not "no such key" is still an error
        ops.finish(call, 404, body({"error": "not_found", "message": "no route"}))


def test_list_pages_continue_at_the_same_revision() -> None:
    call = ops.list_keys("a/", 2)
    assert call.request.params == (("prefix", "a/"), ("limit", "2"))
    page = ops.finish(
        call, 200, body({"kvs": [KV], "more": True, "next_after": "a/b", "count": 5, "revision": 8})
    )
    assert page.more and page.kvs[0].key == "a/b" and page.count == 5
    follow = ops.next_page(page, "a/", 2, "linearizable")
    assert follow is not None
    assert dict(follow.request.params) == {
        "prefix": "a/",
        "limit": "2",
        "after": "a/b",
        "revision": "8",
    }
    last = ops.finish(
        follow, 200, body({"kvs": [], "more": False, "next_after": None, "count": 0, "revision": 8})
    )
    assert ops.next_page(last, "a/", 2, "linearizable") is None


def test_delete_lease_and_cluster_requests() -> None:
    assert ops.delete("p/", prefix=True).request.params == (("prefix", "true"),)
    assert ops.finish(ops.delete("k"), 200, body({"revision": 3, "deleted": 1})) == 1
    grant = ops.grant(10)
    assert grant.request.json == {"ttl": 10} and not grant.idempotent
    assert ops.grant(10, id=5).idempotent
    assert ops.finish(grant, 200, body({"id": 42, "ttl": 10})) == 42
    assert ops.keepalive(42).request.path == "/api/v1/leases/42/keepalive"
    assert ops.finish(ops.revoke(42), 200, body({"revision": 1, "deleted": ["x"]})) == ("x",)
    ttl = ops.finish(
        ops.time_to_live(42),
        200,
        body({"id": 42, "granted_ttl": 10, "remaining": 9.5, "keys": ["x"]}),
    )
    assert ttl.remaining == 9.5 and ttl.keys == ("x",)
    add = ops.add_member("n2", "127.0.0.1:7702")
    assert add.request.json == {"name": "n2", "peer_addr": "127.0.0.1:7702", "learner": True}
    assert ops.transfer("n2").request.json == {"to": "n2"}
    assert ops.finish(ops.transfer("n2"), 200, body({"transferring_to": "n2"})) == "n2"


def test_cluster_status_parses() -> None:
    status = ops.finish(
        ops.cluster_status(),
        200,
        body(
            {
                "member": "n1",
                "leader": "n1",
                "term": 2,
                "role": "leader",
                "commit_index": 5,
                "applied_index": 5,
                "revision": 3,
                "members": [
                    {
                        "name": "n1",
                        "voter": True,
                        "leader": True,
                        "client_url": "http://127.0.0.1:7700",
                        "peer_addr": "127.0.0.1:7701",
                        "match_index": 5,
                    }
                ],
            }
        ),
    )
    assert status.leader == "n1" and status.members[0].peer_addr == "127.0.0.1:7701"


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "invalid_request", BadRequest),
        (413, "limit_exceeded", BadRequest),
        (409, "rejected", BadRequest),
        (404, "lease_not_found", NotFound),
        (410, "compacted", Compacted),
        (503, "no_leader", Unavailable),
        (500, "boom", ShoalError),
    ],
)
def test_error_mapping(status: int, code: str, kind: type[ShoalError]) -> None:
    error = ops.error_for(status, body({"error": code, "message": f"said {code}"}))
    assert type(error) is kind
    assert error.code == code and f"said {code}" in error.message


def test_error_without_json_body_keeps_the_text() -> None:
    error = ops.error_for(502, b"Bad Gateway")
    assert "Bad Gateway" in error.message and error.status == 502


def test_compacted_carries_the_revision_and_watch_open_maps_it() -> None:
    raw = body({"error": "compacted", "message": "compacted", "compact_revision": 17})
    plain = ops.error_for(410, raw)
    assert isinstance(plain, Compacted) and plain.compact_revision == 17
    opened = ops.watch_open_error(410, raw)
    assert isinstance(opened, WatchCompacted) and opened.compact_revision == 17
    assert isinstance(ops.watch_open_error(400, body({"message": "bad"})), BadRequest)


def test_non_json_success_is_an_error() -> None:
    with pytest.raises(ShoalError, match="not JSON"):
        ops.finish(ops.put("k", "v"), 200, b"<html>")


def test_parse_endpoints() -> None:
    assert ops.parse_endpoints(" 127.0.0.1:7700, http://h:1/ ") == (
        "http://127.0.0.1:7700",
        "http://h:1",
    )
    assert ops.parse_endpoints(["https://x"]) == ("https://x",)
    for bad in ("", " , ", "ftp://x", "http://h:99999", "http://"):
        with pytest.raises(ValueError):
            ops.parse_endpoints(bad)


# -- retries --------------------------------------------------------------------------

REFUSED = Unavailable("refused", request_sent=False)
LOST = Unavailable("reset")
NO_LEADER = Unavailable("no leader", code="no_leader", status=503)
OTHER_503 = Unavailable("overloaded", code="overloaded", status=503)


def test_retryable() -> None:
    assert ops.retryable(REFUSED, idempotent=False)
    assert ops.retryable(LOST, idempotent=True)
    assert not ops.retryable(LOST, idempotent=False)
    assert ops.retryable(NO_LEADER, idempotent=False)
    assert not ops.retryable(OTHER_503, idempotent=True)
    assert not ops.retryable(BadRequest("no"), idempotent=True)


def test_attempts_rotate_then_back_off_until_the_deadline() -> None:
    attempts = ops.Attempts(["a", "b"], now=0.0, budget=1.0, start=1)
    assert attempts.endpoint == "b"
    assert attempts.after_failure(REFUSED, 0.0) == 0.0
    assert attempts.endpoint == "a"
    assert attempts.after_failure(REFUSED, 0.0) == 0.05  # a whole round failed
    assert attempts.after_failure(REFUSED, 0.1) == 0.0
    assert attempts.after_failure(REFUSED, 0.1) == 0.1  # doubled
    delays = []
    now = 0.2
    while (delay := attempts.after_failure(NO_LEADER, now)) is not None:
        delays.append(delay)
        now += delay
    assert now < 1.0 and max(delays) <= 0.5
    assert attempts.after_failure(BadRequest("x"), 0.0) is None


def test_attempts_progress_extends_the_deadline() -> None:
    attempts = ops.Attempts(["a"], now=0.0, budget=1.0)
    assert attempts.after_failure(LOST, 2.0) is None
    attempts.progress(2.0)
    assert attempts.after_failure(LOST, 2.0) == 0.05


# -- watch ----------------------------------------------------------------------------


def event(kind: str, revision: int, key: str) -> SseMessage:
    data = {"type": kind, "revision": revision, "kv": {**KV, "key": key}, "prev_kv": None}
    return SseMessage(event=kind, data=json.dumps(data), id=str(revision))


def test_watch_cursor_validates() -> None:
    for bad in ({}, {"prefix": "a", "key": "b"}, {"key": ""}, {"prefix": "a", "start_revision": 0}):
        with pytest.raises(ValueError):
            ops.WatchCursor(**bad)


def test_watch_request_uses_the_start_then_where_the_stream_was() -> None:
    cursor = ops.WatchCursor(prefix="")
    assert cursor.request().params == (("prefix", ""),)
    assert cursor.handle(SseComment("watching from revision 7")) is None
    assert dict(cursor.request().params)["start_revision"] == "7"
    first = cursor.handle(event("put", 7, "a"))
    assert first is not None and first.kv.key == "a" and first.type == "put"
    assert dict(cursor.request().params)["start_revision"] == "7"


def test_watch_resume_delivers_each_event_of_a_revision_once() -> None:
    cursor = ops.WatchCursor(key="a", start_revision=3)
    assert cursor.request().params == (("key", "a"), ("start_revision", "3"))
    delivered = [cursor.handle(event("put", 3, "a")), cursor.handle(event("put", 4, "a"))]
    # The connection drops mid-revision 4 (a txn of two keys); the replay repeats rev 4.
    replay = [event("put", 4, "a"), event("delete", 4, "b"), event("put", 5, "c")]
    delivered += [cursor.handle(item) for item in replay]
    got = [(e.revision, e.type, e.kv.key) for e in delivered if e is not None]
    assert got == [(3, "put", "a"), (4, "put", "a"), (4, "delete", "b"), (5, "put", "c")]
    assert cursor.handle(event("put", 2, "old")) is None


def test_watch_error_event_raises() -> None:
    cursor = ops.WatchCursor(prefix="a")
    closed = SseMessage("error", json.dumps({"error": "watch_closed", "message": "too slow"}), None)
    with pytest.raises(WatchClosed, match="too slow"):
        cursor.handle(closed)
    compacted = SseMessage(
        "error", json.dumps({"error": "compacted", "message": "gone", "compact_revision": 9}), None
    )
    with pytest.raises(WatchCompacted) as info:
        cursor.handle(compacted)
    assert info.value.compact_revision == 9
    with pytest.raises(ShoalError, match="malformed"):
        cursor.handle(SseMessage("put", "{", None))
