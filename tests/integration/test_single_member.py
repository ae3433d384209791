"""A real one-member `shoal server` over HTTP: KV, txn, leases, watches, errors, restart."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.client import ControlPlane
from shoal.testing import ServerProcess, wait_for


def put(s: ServerProcess, key: str, value: str, **body: Any) -> dict[str, Any]:
    r = s.request("PUT", f"/api/v1/kv/{key}", json={"value": value, **body})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_put_get_list_delete_with_revisions(server: ServerProcess) -> None:
    first = put(server, "app/a", "1")["revision"]
    second = put(server, "app/a", "2")["revision"]
    assert second == first + 1
    put(server, "app/b", "x")
    got = server.get("/api/v1/kv/app/a").json()
    assert got["value"] == "2" and got["version"] == 2
    assert got["create_revision"] == first and got["mod_revision"] == second
    assert server.get("/api/v1/kv/app/a", params={"consistency": "stale"}).json()["value"] == "2"
    old = server.get("/api/v1/kv/app/a", params={"revision": first}).json()
    assert old["value"] == "1"

    page = server.get("/api/v1/kv", params={"prefix": "app/", "limit": 1}).json()
    assert [kv["key"] for kv in page["kvs"]] == ["app/a"] and page["more"] is True
    rest = server.get("/api/v1/kv", params={"prefix": "app/", "after": page["next_after"]}).json()
    assert [kv["key"] for kv in rest["kvs"]] == ["app/b"] and rest["more"] is False

    r = server.request("DELETE", "/api/v1/kv", params={"prefix": "app/"})
    assert r.json()["deleted"] == 2
    missing = server.get("/api/v1/kv/app/a")
    assert missing.status_code == 404 and missing.json()["error"] == "key_not_found"


def test_txn_compare_and_swap_is_atomic(server: ServerProcess) -> None:
    put(server, "lock", "free")
    body = {
        "compare": [{"key": "lock", "target": "value", "op": "=", "value": "free"}],
        "success": [{"put": {"key": "lock", "value": "taken"}}, {"get": {"key": "lock"}}],
        "failure": [{"get": {"key": "lock"}}],
    }
    won = server.request("POST", "/api/v1/txn", json=body).json()
    assert won["succeeded"] is True
    assert won["responses"][1]["get"]["kvs"][0]["value"] == "taken"
    lost = server.request("POST", "/api/v1/txn", json=body).json()
    assert lost["succeeded"] is False
    assert lost["responses"][0]["get"]["kvs"][0]["value"] == "taken"


KEPT_TTL = 3  # seconds; the keeper renews every 0.3 s, ten times per TTL


def test_lease_keys_vanish_after_ttl_unless_kept_alive(server: ServerProcess) -> None:
    # Room for a loaded machine without checking less: the kept lease is renewed ten
    # times per TTL (a 1 s TTL renewed every 0.2 s lost its key when a few renewals, or
    # the requests before the first, ran late), and must hold its key for twice its TTL.
    # The un-kept lease keeps a 1 s TTL: it must go, however slow the machine.
    stop = threading.Event()
    renewals: list[tuple[float, int]] = []
    started = time.monotonic()
    kept = server.request("POST", "/api/v1/leases", json={"ttl": KEPT_TTL}).json()["id"]

    def keep() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not stop.wait(0.3):
                answer = client.post(f"/api/v1/leases/{kept}/keepalive")
                renewals.append((time.monotonic(), answer.status_code))

    keeper = threading.Thread(target=keep, daemon=True)
    keeper.start()  # before anything else, so the first renewal is not held up
    try:
        dropped = server.request("POST", "/api/v1/leases", json={"ttl": 1}).json()["id"]
        put(server, "kept", "v", lease=kept)
        put(server, "dropped", "v", lease=dropped)
        wait_for(
            lambda: server.get("/api/v1/kv/dropped").status_code == 404,
            timeout=10,
            what="the un-kept lease to expire",
        )
        # The kept key is there at every look until its TTL has passed twice over.
        while time.monotonic() - started < 2 * KEPT_TTL:
            assert server.get("/api/v1/kv/kept").status_code == 200, renewals
            time.sleep(0.05)  # the polling interval, as wait_for's
        ttl = server.get(f"/api/v1/leases/{kept}").json()
        assert ttl["keys"] == ["kept"] and 0 < ttl["remaining"] <= KEPT_TTL
    finally:
        stop.set()
        keeper.join()
    assert renewals and all(status == 200 for _, status in renewals), renewals
    r = server.request("DELETE", f"/api/v1/leases/{kept}")
    assert r.json()["deleted"] == ["kept"]
    assert server.get("/api/v1/kv/kept").status_code == 404


def read_events(s: ServerProcess, params: dict[str, Any], count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with httpx.stream("GET", s.url + "/api/v1/watch", params=params, timeout=10) as r:
        assert r.status_code == 200, r.read()
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                assert kind in ("put", "delete"), line
                events.append(json.loads(line[6:]))
                if len(events) == count:
                    break
    return events


def test_watch_resumes_exactly_once_in_order(server: ServerProcess) -> None:
    start = put(server, "w/0", "0")["revision"]
    for i in range(1, 10):
        put(server, f"w/{i}", str(i))
    server.request("DELETE", "/api/v1/kv/w/3")
    first = read_events(server, {"prefix": "w/", "start_revision": start}, 4)
    resume_from = first[-1]["revision"] + 1
    rest = read_events(server, {"prefix": "w/", "start_revision": resume_from}, 7)
    seen = first + rest
    revisions = [e["revision"] for e in seen]
    assert revisions == list(range(start, start + 11))
    assert [e["kv"]["key"] for e in seen[:10]] == [f"w/{i}" for i in range(10)]
    assert seen[-1]["type"] == "delete" and seen[-1]["kv"]["key"] == "w/3"


def test_watch_sees_live_events(server: ServerProcess) -> None:
    got: list[dict[str, Any]] = []
    watcher = threading.Thread(
        target=lambda: got.extend(read_events(server, {"prefix": "live/"}, 3)), daemon=True
    )
    watcher.start()
    wait_for(
        lambda: "shoal_watchers 1.0" in server.get("/metrics").text,
        what="the watch to be registered",
    )
    for i in range(3):
        put(server, f"live/{i}", str(i))
    put(server, "other", "x")
    watcher.join(10)
    assert [e["kv"]["key"] for e in got] == ["live/0", "live/1", "live/2"]


def test_a_prefix_set_watch_gets_its_prefixes_only_once_each_and_resumes(
    server: ServerProcess,
) -> None:
    start = put(server, "set/0/a", "x")["revision"]
    put(server, "set/1/a", "x")
    put(server, "set/2/a", "x")  # not in the set
    put(server, "set/0/b", "x")
    put(server, "set/10/a", "x")  # "set/1" would cover it; "set/1/" does not
    put(server, "set/1/b/c", "x")
    # Overlaps ("set/1/" covers "set/1/b/") must not deliver anything twice.
    params = {"prefixes": ["set/0/", "set/1/", "set/1/b/"], "start_revision": start}
    first = read_events(server, params, 2)
    assert [e["kv"]["key"] for e in first] == ["set/0/a", "set/1/a"]
    resumed = {**params, "start_revision": first[-1]["revision"] + 1}
    put(server, "set/2/b", "x")
    put(server, "set/0/c", "x")
    rest = read_events(server, resumed, 3)
    assert [e["kv"]["key"] for e in rest] == ["set/0/b", "set/1/b/c", "set/0/c"]


def test_watch_from_compacted_revision_is_refused(server: ServerProcess) -> None:
    start = put(server, "c", "1")["revision"]
    put(server, "c", "2")
    now = put(server, "c", "3")["revision"]
    assert server.request("POST", "/api/v1/compact", json={"revision": now}).status_code == 200
    r = server.get("/api/v1/watch", params={"prefix": "c", "start_revision": start})
    assert r.status_code == 410
    assert r.json()["error"] == "compacted" and r.json()["compact_revision"] == now


BAD_REQUESTS = [
    ("PUT", "/api/v1/kv/k", b"{not json", 400, "invalid_request"),
    ("PUT", "/api/v1/kv/k", b'{"value": "v", "colour": 1}', 400, "invalid_request"),
    ("PUT", "/api/v1/kv/k", b'{"value": 5}', 400, "invalid_request"),
    ("PUT", "/api/v1/kv/k", b'{"value": "v", "lease": 42}', 404, "lease_not_found"),
    ("PUT", "/api/v1/kv/" + "k" * 2000, b'{"value": "v"}', 413, "limit_exceeded"),
    ("GET", "/api/v1/kv/k?consistency=eventual", b"", 400, "invalid_request"),
    ("GET", "/api/v1/kv?limit=0", b"", 400, "invalid_request"),
    ("DELETE", "/api/v1/kv", b"", 400, "invalid_request"),
    ("POST", "/api/v1/txn", b'{"success": [{"put": {"key": "a"}}]}', 400, "invalid_request"),
    ("POST", "/api/v1/txn", b'{"success": [{}]}', 400, "invalid_request"),
    ("POST", "/api/v1/leases", b'{"ttl": 0}', 400, "invalid_request"),
    ("POST", "/api/v1/leases/77/keepalive", b"", 404, "lease_not_found"),
    ("DELETE", "/api/v1/leases/77", b"", 404, "lease_not_found"),
    ("GET", "/api/v1/watch", b"", 400, "invalid_request"),
    ("GET", "/api/v1/watch?prefix=a&start_revision=0", b"", 400, "invalid_request"),
    (
        "POST",
        "/api/v1/cluster/members",
        b'{"name": "x y", "peer_addr": "h:1"}',
        400,
        "invalid_request",
    ),
    ("POST", "/api/v1/cluster/transfer", b'{"to": "nobody"}', 409, "rejected"),
    ("POST", "/api/v1/compact", b'{"revision": 999999}', 400, "future_revision"),
    ("GET", "/api/v1/watch?key=", b"", 400, "invalid_request"),
    ("GET", "/api/v1/watch?prefixes=", b"", 400, "invalid_request"),
    ("GET", "/api/v1/watch?prefixes=a&prefixes=", b"", 400, "invalid_request"),
    ("GET", "/api/v1/watch?prefixes=a&prefix=b", b"", 400, "invalid_request"),
    ("GET", "/api/v1/watch?" + "&".join(["prefixes=p"] * 257), b"", 400, "invalid_request"),
    ("GET", "/api/v1/watch?prefixes=a&start_revision=0", b"", 400, "invalid_request"),
    (
        "PUT",
        "/api/v1/kv/k",
        b'{"value": "v", "lease": 1180591620717411303424}',
        400,
        "invalid_request",
    ),
    ("POST", "/api/v1/compact", b'{"revision": 1180591620717411303424}', 400, "invalid_request"),
    ("DELETE", "/api/v1/leases/1180591620717411303424", b"", 400, "invalid_request"),
    ("POST", "/api/v1/cluster/members/nope/promote", b"", 404, "member_not_found"),
    (
        "POST",
        "/api/v1/cluster/members",
        b'{"name": "x", "peer_addr": "h:99999"}',
        400,
        "invalid_request",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
def test_bad_input_gets_a_4xx_that_says_what_is_wrong(
    server: ServerProcess, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    r = server.request(method, path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    data = r.json()
    assert data["error"] == code and data["message"], data


def test_oversized_body_is_refused(server: ServerProcess) -> None:
    r = server.request("PUT", "/api/v1/kv/big", content=b"x" * (3 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"


def test_restart_keeps_everything_and_sigterm_exits_cleanly(server: ServerProcess) -> None:
    revisions = [put(server, f"keep/{i}", str(i))["revision"] for i in range(20)]
    assert server.terminate() == 0
    server.start().wait_ready()
    page = server.get("/api/v1/kv", params={"prefix": "keep/"}).json()
    assert len(page["kvs"]) == 20
    assert server.get("/api/v1/kv/keep/19").json()["mod_revision"] == revisions[-1]


def test_sigkill_loses_no_acknowledged_write(server: ServerProcess) -> None:
    acked = [put(server, f"k/{i}", str(i))["revision"] for i in range(50)]
    server.kill()
    server.start().wait_ready()
    page = server.get("/api/v1/kv", params={"prefix": "k/"}).json()
    assert len(page["kvs"]) == 50
    assert max(kv["mod_revision"] for kv in page["kvs"]) == acked[-1]


def test_openapi_schema_is_served(server: ServerProcess) -> None:
    schema = server.get("/api/v1/openapi.json").json()
    assert "/api/v1/kv/{key}" in schema["paths"]
    assert "/api/v1/watch" in schema["paths"]


def _last_segment(server: ServerProcess) -> Path:
    segments = sorted((server.data_dir / "wal").glob("*.wal"))
    assert segments, f"no WAL segments in {server.data_dir}"
    return segments[-1]


def test_torn_wal_tail_after_a_crash_mid_write_is_recovered(server: ServerProcess) -> None:
    acked = [put(server, f"t/{i}", str(i))["revision"] for i in range(30)]
    server.kill()
    segment = _last_segment(server)
    # A crash in the middle of writing the next record: a header promising more bytes
    # than ever reached the disk.
    with segment.open("ab") as f:
        f.write(b"\x00\x10\x00\x00" + b"\xde\xad\xbe\xef" + b"\x01partial")
    server.start().wait_ready()
    page = server.get("/api/v1/kv", params={"prefix": "t/"}).json()
    assert len(page["kvs"]) == 30
    assert max(kv["mod_revision"] for kv in page["kvs"]) == acked[-1]
    assert "recovered a torn WAL tail: cut 16 bytes" in server.log()
    assert put(server, "t/after", "x")["revision"] > acked[-1]


def test_corrupt_wal_record_in_the_middle_refuses_to_start(server: ServerProcess) -> None:
    for i in range(30):
        put(server, f"c/{i}", "x" * 100)
    server.kill()
    segment = _last_segment(server)
    data = bytearray(segment.read_bytes())
    offset = len(data) // 2
    data[offset] ^= 0xFF
    segment.write_bytes(bytes(data))
    server.start()
    assert server.proc is not None
    code = server.proc.wait(20)
    assert code != 0
    log = server.log()
    assert "WAL corrupt" in log and segment.name in log and "offset" in log, log


def test_the_client_watches_a_prefix_set_and_refuses_bad_sets(server: ServerProcess) -> None:
    with ControlPlane(server.url) as plane:
        start = plane.put("cset/a/1", "x")
        plane.put("cset/b/1", "x")
        plane.put("cset/c/1", "x")
        keys = []
        for event in plane.watch(prefixes=["cset/a/", "cset/c/"], start_revision=start):
            keys.append(event.kv.key)
            if len(keys) == 2:
                break
        assert keys == ["cset/a/1", "cset/c/1"]
        for bad in ([], [""], "cset/", [f"p{i}" for i in range(257)]):
            with pytest.raises(ValueError):
                plane.watch(prefixes=bad)
        with pytest.raises(ValueError):
            plane.watch(prefix="a", prefixes=["b"])
