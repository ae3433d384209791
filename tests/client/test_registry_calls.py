"""The registry's and config center's calls and stream cursors (sans-IO)."""

from __future__ import annotations

import json

import pytest

from shoal.client import config as cfg
from shoal.client import protocol as ops
from shoal.client import registry as reg
from shoal.client.errors import NotFound, ShoalError, Unavailable, WatchClosed, WatchCompacted
from shoal.client.sse import SseComment, SseMessage
from shoal.config import ItemId

INSTANCE = {
    "service": "users",
    "id": "u1",
    "address": "127.0.0.1",
    "port": 8001,
    "weight": 1.0,
    "zone": "eu",
    "tags": ["v2"],
    "metadata": {"k": "v"},
    "version": "",
    "check": None,
    "deregister_after": None,
    "registered_at": 1.0,
    "health": {"status": "passing", "reason": "registered", "since": 1.0},
    "lease": 77,
    "mod_revision": 5,
}


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_register_sends_only_given_optionals_and_reads_the_stored_instance() -> None:
    call = reg.register("users", "u1", address="127.0.0.1", port=8001, tags=["v2"], lease=77)
    assert call.request.method == "PUT"
    assert call.request.path == "/api/v1/services/users/instances/u1"
    assert call.request.json["lease"] == 77 and "check" not in call.request.json
    done = ops.finish(call, 200, body({**INSTANCE, "revision": 9}))
    assert done.revision == 9 and done.lease == 77
    assert done.instance.port == 8001 and done.instance.tags == ("v2",)


def test_deregister_missing_ok_turns_only_instance_not_found_into_zero() -> None:
    missing = body({"error": "instance_not_found", "message": "no instance u1 of users"})
    assert ops.finish(reg.deregister("users", "u1", missing_ok=True), 404, missing) == 0
    with pytest.raises(NotFound):
        ops.finish(reg.deregister("users", "u1"), 404, missing)
    with pytest.raises(NotFound):  # another 404 (no route) is still an error
        ops.finish(reg.deregister("users", "u1", missing_ok=True), 404, body({"error": "x"}))


def test_instances_builds_filters_and_parses_discovery() -> None:
    call = reg.instances(
        "users", healthy=True, tags=["a", "b"], zone="eu", meta={"k": "v"}, consistency="stale"
    )
    assert call.request.params == (
        ("tag", "a"),
        ("tag", "b"),
        ("healthy", "true"),
        ("zone", "eu"),
        ("meta.k", "v"),
        ("consistency", "stale"),
    )
    answer = {
        "service": "users",
        "revision": 12,
        "protected": False,
        "protect_threshold": 0.0,
        "total": 1,
        "healthy": 1,
        "instances": [INSTANCE],
    }
    found = ops.finish(call, 200, body(answer))
    assert found.revision == 12 and [i.id for i in found.instances] == ["u1"]
    assert found.to_json()["instances"][0]["address"] == "127.0.0.1"


def test_keepalive_cursor_yields_ttls_and_reopens_on_failover_but_not_on_lost_lease() -> None:
    cursor = reg.KeepAliveCursor(42)
    assert cursor.request().path == "/api/v1/leases/42/keepalive-stream"
    assert cursor.handle(SseMessage("keepalive", '{"id": 42, "ttl": 10}', None)) == 10
    with pytest.raises(WatchClosed) as closed:
        cursor.handle(SseMessage("error", '{"error": "NotLeaderError", "message": "x"}', None))
    assert cursor.reopen(closed.value)
    assert cursor.reopen(Unavailable("refused", request_sent=False))
    assert not cursor.reopen(NotFound("no lease", code="lease_not_found", status=404))


def test_instance_watch_cursor_resumes_at_the_last_revision_without_repeats() -> None:
    cursor = reg.InstanceWatchCursor("users")
    assert cursor.handle(SseComment("watching users from revision 7")) is None
    assert cursor.request().params == (("start_revision", "7"),)
    put = {"type": "put", "revision": 8, "service": "users", "id": "u1", "instance": INSTANCE}
    first = cursor.handle(SseMessage("put", json.dumps(put), "8"))
    assert first is not None and first.instance is not None and first.instance.id == "u1"
    # Reconnected: the server replays revision 8; the cursor drops what it delivered.
    assert cursor.request().params == (("start_revision", "8"),)
    assert cursor.handle(SseMessage("put", json.dumps(put), "8")) is None
    gone = {"type": "delete", "revision": 9, "service": "users", "id": "u1"}
    event = cursor.handle(SseMessage("delete", json.dumps(gone), "9"))
    assert event is not None and event.type == "delete" and event.instance is None
    with pytest.raises(ShoalError):
        cursor.handle(SseMessage("put", "{not json", "10"))


def test_config_writes_are_repeated_after_a_lost_race_but_not_a_version_mismatch() -> None:
    call = cfg.publish("prod/app", "a: 1\n", "yaml", author="me", expect_version=3)
    assert call.request.json == {
        "content": "a: 1\n",
        "format": "yaml",
        "author": "me",
        "expect_version": 3,
    }
    assert not call.idempotent
    attempts = ops.Attempts(["http://a", "http://b"], now=0.0)
    lost = ShoalError("changed", code="conflict", status=409)
    mismatch = ShoalError("no", code="version_mismatch", status=409)
    assert attempts.after_failure(lost, 0.0, call.idempotent, call.repeat_on) is not None
    assert attempts.after_failure(mismatch, 0.0, call.idempotent, call.repeat_on) is None


def test_config_cursor_restarts_from_the_present_after_compaction() -> None:
    cursor = cfg.ConfigCursor(ItemId.parse("prod/app"))
    frame = {"version": 1, "beta": False, "format": "text", "content": "x", "sha256": "s"}
    assert cursor.handle(SseMessage("config", json.dumps(frame), "5")) is not None
    assert ("start_revision", "6") in cursor.request().params
    assert cursor.reopen(WatchCompacted("gone", compact_revision=9))
    assert all(name != "start_revision" for name, _ in cursor.request().params)
    # The same content found again after the re-list is not delivered twice.
    assert cursor.handle(SseMessage("config", json.dumps(frame), "12")) is None
    assert not cursor.reopen(NotFound("no item", code="not_found", status=404))
