"""The member's HTTP API in-process: real members (WAL files, Raft loop, store) in the
test's event loop, asked over `httpx.ASGITransport` -- no sockets between client and API.

The main property: the fast path (fastpath.py) and the FastAPI routes give identical
answers and errors for the same requests. Two single-member clusters get the same
requests in the same order, so their histories (and so their revisions) are the same:
one is served by the front with its fast path, the other with everything sent to
FastAPI (`ApiFront(app, member, fast=None)`). Status, content type and body must match
byte for byte, except for what differs between any two runs (wall-clock times and
random lease ids), which is masked.

Then the lifespan (lifespan.py) and the member's one door, in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shoal.kv import MAX_TXN_OPS, LeaseNotFound
from shoal.node.app import build_app
from shoal.node.front import ApiFront
from shoal.node.lifespan import RunningMember, running_member
from shoal.node.member import MemberConfig, NotLeaderError
from shoal.node.server import front

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 120) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def until(
    condition: Callable[[], object], timeout: float = 10, what: str = "", every: float = 0.005
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(every)


def config(data_dir: Path, **changes: Any) -> MemberConfig:
    # peer_port 0: the transport listens where the OS says; nobody dials a lone member.
    return MemberConfig(name="n1", data_dir=data_dir, peer_port=0, **changes)


@contextlib.asynccontextmanager
async def member_client(
    data_dir: Path, *, fast: bool = True, **changes: Any
) -> AsyncIterator[tuple[RunningMember, httpx.AsyncClient]]:
    """A running single-member cluster and an ASGI client of its whole HTTP API."""
    async with running_member(config(data_dir, **changes)) as running:
        await until(lambda: running.member.is_caught_up, what="a caught-up leader")
        app = front(running) if fast else ApiFront(build_app(running), running.member, None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://member") as client:
            yield running, client


# -- the fast path and FastAPI answer alike --------------------------------------------

# Differs between any two runs: wall-clock times, and lease ids the member drew.
_MASKED = re.compile(rb'"(registered_at|since|lease)":(\d+(?:\.\d+)?(?:e[+-]?\d+)?)')


def masked(body: bytes) -> bytes:
    return _MASKED.sub(rb'"\1":0', body)


Request = tuple[str, str, Any]  # method, path (with any query), JSON body or raw bytes

SVC = "/api/v1/services/api/instances"
TXN = "/api/v1/txn"


def _put(key: str, value: str, **fields: Any) -> dict[str, Any]:
    return {"put": {"key": key, "value": value, **fields}}


def _puts(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"compare": [], "success": [_put(k, v) for k, v in pairs], "failure": []}


HTTP_CHECK = {"type": "http", "path": "/healthz", "interval": "1h"}
# Each request in turn; both members get the same sequence, so revisions agree.
REQUESTS: list[Request] = [
    # the key-value store: puts and gets the fast path answers
    ("PUT", "/api/v1/kv/a", {"value": "1"}),
    ("PUT", "/api/v1/kv/a", {"value": "2", "prev_kv": True}),
    ("PUT", "/api/v1/kv/fresh", {"value": "x", "prev_kv": True}),
    ("PUT", "/api/v1/kv/%C3%BC", {"value": "\u00e9 \u4e2d \U0001f600"}),
    ("GET", "/api/v1/kv/a", None),
    ("GET", "/api/v1/kv/a?consistency=stale", None),
    ("GET", "/api/v1/kv/%C3%BC", None),
    ("GET", "/api/v1/kv/missing", None),
    ("GET", "/api/v1/kv/m%C3%AFssing", None),
    ("POST", "/api/v1/leases", {"ttl": 60, "id": 77}),
    ("PUT", "/api/v1/kv/leased", {"value": "x", "lease": 77}),
    ("PUT", "/api/v1/kv/leased", {"value": "x", "lease": 78}),  # no such lease: 404
    ("GET", "/api/v1/kv/leased", None),
    # ... and the ones it declines, which FastAPI words on both
    ("PUT", "/api/v1/kv/bad", {"value": 1}),
    ("PUT", "/api/v1/kv/bad", {"value": "x", "extra": 1}),
    ("PUT", "/api/v1/kv/bad", {"value": "x", "lease": True}),
    ("PUT", "/api/v1/kv/bad", {"value": "x", "lease": 0}),
    ("PUT", "/api/v1/kv/bad", {"value": "x", "prev_kv": "yes"}),
    ("PUT", "/api/v1/kv/bad", []),
    ("PUT", "/api/v1/kv/bad", b""),
    ("PUT", "/api/v1/kv/bad", b"{not json"),
    ("PUT", "/api/v1/kv/" + "k" * 5000, {"value": "x"}),
    ("PUT", "/api/v1/kv/big", {"value": "v" * (1024 * 1024 + 1)}),
    ("PUT", "/api/v1/kv/a?via=fastapi", {"value": "3"}),
    ("GET", "/api/v1/kv/a?consistency=bogus", None),
    ("GET", "/api/v1/kv/a?revision=2", None),
    ("GET", "/api/v1/kv/a?revision=999", None),
    # txns of puts only, without compares (the events batcher's): the fast path answers
    ("POST", TXN, _puts(("t/a", "1"), ("t/b", "\u00e9"))),
    ("POST", TXN, {"success": [{"put": {"key": "t/c", "value": "x", "lease": 77}}]}),
    ("POST", TXN, {"compare": [], "success": [{"put": {"key": "t/a", "value": "2"}}]}),
    ("GET", "/api/v1/kv/t/b", None),
    # ... a put of it naming a lease that does not exist: 404, and nothing applied
    ("POST", TXN, {"success": [_put("t/half", "x"), _put("t/half2", "x", lease=78)]}),
    ("GET", "/api/v1/kv/t/half", None),
    # ... and the txns it declines, which FastAPI answers (or words the error of) on both
    (
        "POST",
        TXN,
        {
            "compare": [{"key": "t/a", "target": "exists", "value": True}],
            "success": [_put("t/d", "y")],
        },
    ),
    ("POST", TXN, {"success": [_put("t/e", "y")], "failure": [_put("t/f", "z")]}),
    ("POST", TXN, {"success": [{"get": {"key": "t/a"}}]}),
    ("POST", TXN, {"success": [_put("t/g", "y"), {"delete": {"key": "t/a"}}]}),
    ("POST", TXN, {"success": []}),
    ("POST", TXN, {}),
    ("POST", TXN, {"success": [{"put": {"key": "t/h", "value": "y"}, "delete": None}]}),
    ("POST", TXN, {"success": [{"put": {"key": "", "value": "y"}}]}),
    ("POST", TXN, {"success": [{"put": {"key": "t/i", "value": 1}}]}),
    ("POST", TXN, {"success": [{"put": {"key": "t/i", "value": "y", "lease": True}}]}),
    ("POST", TXN, {"success": [{"put": {"key": "t/i", "value": "y", "lease": 0}}]}),
    ("POST", TXN, {"success": [{"put": {"key": "t/i", "value": "y", "prev_kv": True}}]}),
    ("POST", TXN, {"success": [{"put": {"key": "k" * 5000, "value": "y"}}]}),
    ("POST", TXN, {"success": [_put(f"t/many/{i}", "y") for i in range(MAX_TXN_OPS + 1)]}),
    ("POST", TXN, {"success": {"put": {"key": "t/i", "value": "y"}}}),
    ("POST", TXN, {"success": [["put"]]}),
    ("POST", TXN, {"success": [_put("t/j", "y")], "extra": 1}),
    ("POST", TXN, [_put("t/j", "y")]),
    ("POST", TXN, b"{not json"),
    ("POST", TXN + "?x=1", {"success": [_put("t/k", "y")]}),
    ("GET", "/api/v1/kv/t/i", None),
    # the registry: registrations, heartbeats and discovery the fast path answers
    ("PUT", f"{SVC}/i1", {"address": "10.0.0.1", "port": 80}),
    ("PUT", f"{SVC}/i2", {"address": "10.0.0.2", "port": 80, "weight": 2, "zone": "eu"}),
    (
        "PUT",
        f"{SVC}/i3",
        {
            "address": "10.0.0.3",
            "port": 81,
            "tags": ["blue", "v\u00e9"],
            "metadata": {"team": "\u00e9quipe"},
            "version": "1.2",
            "check": {"type": "ttl", "ttl": "30s"},
        },
    ),
    ("PUT", f"{SVC}/i4", {"address": "10.0.0.4", "port": 82, "check": HTTP_CHECK}),
    ("PUT", f"{SVC}/i1", {"address": "10.0.0.1", "port": 8080, "status": "warning"}),
    ("PUT", f"{SVC}/i3/heartbeat", None),
    ("PUT", f"{SVC}/nobody/heartbeat", None),
    ("PUT", f"{SVC}/i1/heartbeat", None),  # no lease: FastAPI's 400 on both
    ("GET", SVC, None),
    ("GET", f"{SVC}?healthy=true", None),
    ("GET", f"{SVC}?tag=blue&zone=eu", None),
    ("GET", f"{SVC}?meta.team=%C3%A9quipe&consistency=stale", None),
    ("GET", "/api/v1/services/none/instances", None),
    # ... and the ones it declines
    ("PUT", f"{SVC}/bad", {"address": "10.0.0.9", "port": "80"}),
    ("PUT", f"{SVC}/bad", {"address": "10.0.0.9", "port": True}),
    ("PUT", f"{SVC}/bad", {"address": "10.0.0.9", "port": 80, "colour": "red"}),
    ("PUT", f"{SVC}/bad", {"address": "10.0.0.9", "port": 0}),
    ("PUT", f"{SVC}/bad", {"address": "", "port": 80}),
    ("PUT", f"{SVC}/bad", {"address": "10.0.0.9", "port": 80, "status": "fine"}),
    ("PUT", f"{SVC}/bad", {"address": "10.0.0.9", "port": 80, "check": {"type": "ttl"}}),
    ("PUT", f"{SVC}/bad", {"address": "10.0.0.9", "port": 80, "lease": 12345}),
    ("PUT", "/api/v1/services/b%20d/instances/i1", {"address": "10.0.0.9", "port": 80}),
    ("PUT", f"{SVC}/b%21d", {"address": "10.0.0.9", "port": 80}),
    ("PUT", f"{SVC}/i9?x=1", {"address": "10.0.0.9", "port": 80}),
    ("GET", f"{SVC}?healthy=maybe", None),
    ("GET", f"{SVC}?colour=red", None),
    ("GET", f"{SVC}?consistency=eventual", None),
    ("GET", "/api/v1/services/b%20d/instances", None),
    # what neither path may answer differently: the boundary, before either
    ("PUT", "/api/v1/kv/a%FF", {"value": "x"}),
    ("PUT", "/api/v1/kv/s", b'{"value": "\\ud800"}'),
    ("PUT", f"{SVC}/i5", b'{"address": "10.0.0.5", "port": 80, "zone": "\\udfff"}'),
]


async def ask(client: httpx.AsyncClient, request: Request) -> httpx.Response:
    method, path, body = request
    if isinstance(body, bytes):
        return await client.request(method, path, content=body)
    if body is None:
        return await client.request(method, path)
    return await client.request(method, path, json=body)


def test_the_fast_path_and_fastapi_give_identical_answers_and_errors(tmp_path: Path) -> None:
    async def main() -> list[tuple[Request, int]]:
        async with (
            member_client(tmp_path / "fast") as (fast_member, fast),
            member_client(tmp_path / "slow", fast=False) as (_, slow),
        ):
            served = []
            for request in REQUESTS:
                a, b = await ask(fast, request), await ask(slow, request)
                where = f"{request[0]} {request[1][:80]}"
                assert a.status_code == b.status_code, (where, a.text, b.text)
                assert a.headers["content-type"] == b.headers["content-type"], where
                assert masked(a.content) == masked(b.content), (where, a.text, b.text)
                served.append((request, a.status_code))
            assert fast_member.member.kv.revision > 10  # the writes really happened
            # A txn refused for one of its puts applied none of them.
            assert fast_member.member.kv.get(b"t/half") is None
            return served

    served = run(main())
    statuses = {status for _, status in served}
    assert {200, 400, 404, 413} <= statuses, statuses  # successes and each kind of error


def fastapi_seen(client: httpx.AsyncClient) -> list[str]:
    """The requests the FastAPI app behind `client`'s front gets from now on."""
    front_app = client._transport.app  # type: ignore[attr-defined]
    assert isinstance(front_app, ApiFront)
    seen: list[str] = []
    inner = front_app.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen.append(f"{scope['method']} {scope['path']}")
        await inner(scope, receive, send)

    front_app.app = spy
    return seen


def test_the_fast_path_really_answers_what_it_claims(tmp_path: Path) -> None:
    """The comparison above proves nothing if the fast path declined everything: count
    the requests FastAPI saw on the fast member."""

    async def main() -> None:
        async with member_client(tmp_path / "m") as (_, client):
            seen = fastapi_seen(client)
            hot = [
                ("PUT", "/api/v1/kv/a", {"value": "1"}),
                ("GET", "/api/v1/kv/a", None),
                ("GET", "/api/v1/kv/none", None),
                ("POST", TXN, _puts(("t/a", "1"), ("t/b", "2"))),
                ("POST", TXN, {"success": [_put("t/c", "3")]}),
                ("PUT", f"{SVC}/i1", {"address": "10.0.0.1", "port": 80}),
                (
                    "PUT",
                    f"{SVC}/i2",
                    {"address": "10.0.0.2", "port": 80, "check": {"type": "ttl", "ttl": "10s"}},
                ),
                ("PUT", f"{SVC}/i2/heartbeat", None),
                ("PUT", f"{SVC}/none/heartbeat", None),
                ("GET", f"{SVC}?healthy=true", None),
            ]
            for request in hot:
                answer = await ask(client, request)
                assert answer.status_code in (200, 404), (request, answer.text)
            assert seen == [], f"FastAPI answered {seen}"
            await ask(client, ("PUT", "/api/v1/kv/a", {"value": 1}))
            assert seen == ["PUT /api/v1/kv/a"]

    run(main())


async def watch_bytes(app: Any, query: bytes, events: int) -> tuple[int, list[Any], bytes]:
    """Run `GET /api/v1/watch?{query}` on the ASGI `app` until `events` SSE events came,
    then disconnect: (status, headers, the body as sent)."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/watch",
        "raw_path": b"/api/v1/watch",
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"member"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 1),
        "server": ("member", 80),
    }
    gone = asyncio.Event()
    started: list[Any] = []
    body = bytearray()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.extend([message["status"], message.get("headers", [])])
        else:
            body.extend(message.get("body", b""))
            if body.count(b"event: put") >= events:
                gone.set()

    await asyncio.wait_for(app(scope, receive, send), 10)
    return started[0], started[1], bytes(body)


def test_a_watch_streams_the_same_bytes_on_the_fast_path_and_skips_fastapi(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with (
            member_client(tmp_path / "fast") as (_, fast),
            member_client(tmp_path / "slow", fast=False) as (_, slow),
        ):
            for client in (fast, slow):
                for i in range(3):
                    await ask(client, ("PUT", f"/api/v1/kv/w/{i}", {"value": str(i)}))
                await ask(client, ("PUT", "/api/v1/kv/other", {"value": "x"}))
            fast_app = fast._transport.app  # type: ignore[attr-defined]
            slow_app = slow._transport.app  # type: ignore[attr-defined]
            seen = fastapi_seen(fast)
            for query, events in (
                (b"prefix=w/&start_revision=1", 3),
                (b"key=w/1&start_revision=2", 1),
                (b"prefix=&start_revision=1", 4),
            ):
                a = await watch_bytes(fast_app, query, events)
                b = await watch_bytes(slow_app, query, events)
                assert a == b, query
                assert a[0] == 200 and a[2].count(b"event: put") >= events, a
            assert seen == [], f"FastAPI answered {seen}"
            # What the fast path does not take (a prefix set, a bad revision) FastAPI does.
            status, _, _ = await watch_bytes(fast_app, b"prefixes=w/&start_revision=1", 3)
            assert status == 200
            huge = "9" * 5000  # past int()'s digit limit
            for bad in ("prefix=w/&start_revision=0", "key=", f"prefix=w/&start_revision={huge}"):
                answer = await fast.get(f"/api/v1/watch?{bad}")
                assert answer.status_code == 400, (bad, answer.text)
            assert len(seen) == 4, seen

    run(main())


# -- the lifespan --------------------------------------------------------------------


def test_the_lifespan_starts_the_parts_and_stops_every_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with member_client(tmp_path / "m") as (running, client):
            checker_task = running.checker._task
            member_task = running.member.task
            assert checker_task is not None and not checker_task.done()
            assert member_task is not None and not member_task.done()
            checks = await client.get("/api/v1/health/checks")
            assert checks.status_code == 200 and checks.json()["member"] == "n1"
        assert checker_task.done() and member_task.done()
        assert running.checker._http is None  # the probe client is closed
        assert running.link._client.is_closed  # so is the forwarding client

    run(main())


def test_each_member_has_its_own_checker_and_cache(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            member_client(tmp_path / "a") as (a, _),
            member_client(tmp_path / "b") as (b, _),
        ):
            assert a.checker is not b.checker and a.cache is not b.cache
            assert a.checker.member is a.member and b.checker.member is b.member

    run(main())


def test_a_member_restarts_in_process_with_what_it_acknowledged(tmp_path: Path) -> None:
    async def main() -> None:
        async with member_client(tmp_path / "m") as (_, client):
            assert (await client.put("/api/v1/kv/k", json={"value": "kept"})).status_code == 200
        async with member_client(tmp_path / "m") as (_, client):
            answer = await client.get("/api/v1/kv/k")
            assert answer.status_code == 200 and answer.json()["value"] == "kept"

    run(main())


# -- the member's one door -----------------------------------------------------------


def test_membership_changes_and_transfers_are_answered_by_the_loop(tmp_path: Path) -> None:
    async def main() -> None:
        async with member_client(tmp_path / "m") as (running, client):
            # A voter at an address nobody answers would strand a cluster of one.
            add = {"name": "n2", "peer_addr": "127.0.0.1:9", "learner": False}
            refused = await client.post("/api/v1/cluster/members", json=add)
            assert refused.status_code == 409 and refused.json()["error"] == "rejected"
            learner = await client.post("/api/v1/cluster/members", json={**add, "learner": True})
            assert learner.status_code == 200, learner.text
            await until(lambda: "n2" in running.member.status.conf.learners, what="n2 added")
            not_voter = await client.post("/api/v1/cluster/transfer", json={"to": "n2"})
            assert not_voter.status_code == 409, not_voter.text
            removed = await client.delete("/api/v1/cluster/members/n2")
            assert removed.status_code == 200, removed.text
            await until(lambda: "n2" not in running.member.status.conf.members, what="removed")

    run(main())


def test_a_follower_status_refuses_loop_requests_with_not_leader(tmp_path: Path) -> None:
    """A member that knows no leader (a voter of a cluster whose other members never
    started) answers the loop's requests with NotLeaderError, from the loop."""

    async def main() -> None:
        cfg = config(
            tmp_path / "m",
            initial_cluster={"n1": ("127.0.0.1", 0), "n2": ("127.0.0.1", 9)},
            request_timeout=2.0,
        )
        async with running_member(cfg) as running:
            with pytest.raises(NotLeaderError):
                await running.member.transfer_leadership("n2")
            from shoal.raft import ConfChangeOp

            with pytest.raises(NotLeaderError):
                await running.member.change_membership(
                    ConfChangeOp.ADD_LEARNER, "n3", ("127.0.0.1", 10)
                )
            assert running.member.status.leader is None

    run(main())


def test_a_keepalive_of_a_lease_past_its_expiry_is_refused(tmp_path: Path) -> None:
    """Between a lease's expiry and its revoke's commit the lease still exists; renewing
    it then must not succeed, since the revoke is already on its way (etcd's rule)."""

    async def main() -> None:
        # Long ticks keep the window between expiry and revoke wide (expiry is checked
        # on ticks); the poll below is far finer than that.
        async with member_client(tmp_path / "m", tick_seconds=0.25) as (running, client):
            member = running.member
            granted = await client.post("/api/v1/leases", json={"ttl": 1, "id": 5})
            assert granted.status_code == 200
            now = time.monotonic

            def expired_not_revoked() -> bool:
                return (
                    5 in member.kv.leases and member.kv.leases.time_to_live(5, now()).remaining == 0
                )

            await until(expired_not_revoked, timeout=5, what="the lease to expire", every=0.0005)
            with pytest.raises(LeaseNotFound):
                member.keepalive(5)
            await until(lambda: 5 not in member.kv.leases, what="the revoke")

    run(main())


# -- config validation off the event loop ----------------------------------------------


def test_config_content_is_parsed_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing a large YAML document takes seconds: a publish and a beta parse in a
    worker thread, so the loop that runs Raft and every other request is not held."""
    import threading

    from shoal.config import model

    parsed_on: list[int] = []
    real_validate = model.validate

    def watched(content: str, fmt: Any) -> Any:  # the real validation, and where it ran
        parsed_on.append(threading.get_ident())
        return real_validate(content, fmt)

    monkeypatch.setattr(model, "validate", watched)

    async def main() -> None:
        async with member_client(tmp_path / "m") as (_, client):
            loop_thread = threading.get_ident()
            item = "/api/v1/config/app/limits"
            published = await client.put(item, json={"content": "a: 1\n", "format": "yaml"})
            assert published.status_code == 200, published.text
            beta = {"content": "a: 2\n", "format": "yaml", "selector": {"zone": "eu"}}
            started = await client.put(f"{item}/beta", json=beta)
            assert started.status_code == 200, started.text
            bad = await client.put(item, json={"content": "a: [1\n", "format": "yaml"})
            assert bad.status_code == 400 and bad.json()["error"] == "invalid_content", bad.text
            assert len(parsed_on) == 3 and loop_thread not in parsed_on, parsed_on

    run(main())
