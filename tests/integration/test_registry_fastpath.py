"""The registry's fast path (shoal/node/fastpath.py) on a real `shoal server`: heartbeats,
registrations and discovery answered in plain ASGI give the same answers and errors as the
FastAPI handlers, followers still forward, and cached discovery follows every change.

A request the fast path declines (a query string on a heartbeat, a body value pydantic
has to coerce) goes to the FastAPI handler, so comparing the two answers compares the two
implementations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal.registry import (
    Instance,
    discover,
    instances_prefix,
    parse_filter,
    parse_instance_key,
)
from shoal.testing import ServerProcess, local_cluster, wait_for

PREFIX = "/api/v1/services"


def register(s: ServerProcess, service: str, iid: str, **body: Any) -> dict[str, Any]:
    r = s.request("PUT", f"{PREFIX}/{service}/instances/{iid}", json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def lease_remaining(s: ServerProcess, lease: int) -> float:
    r = s.get(f"/api/v1/leases/{lease}")
    assert r.status_code == 200, r.text
    remaining: float = r.json()["remaining"]
    return remaining


def test_heartbeat_answers_and_errors_match_the_fastapi_handler(server: ServerProcess) -> None:
    out = register(
        server, "web", "a1", address="10.0.0.1", port=80, check={"type": "ttl", "ttl": "3s"}
    )
    lease = out["lease"]
    path = f"{PREFIX}/web/instances/a1/heartbeat"
    fast = server.request("PUT", path)
    with_body = server.request("PUT", path, content=b'{"ignored": true}')
    handler = server.request("PUT", path + "?via=fastapi")  # declined by the fast path
    for r in (fast, with_body, handler):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
    assert fast.content == with_body.content == handler.content
    assert fast.json() == {"id": "a1", "lease": lease, "ttl": 3}

    # It really restarts the TTL: let it run down, then heartbeat.
    wait_for(lambda: lease_remaining(server, lease) < 2.5, 5, what="the lease to run down")
    assert server.request("PUT", path).status_code == 200
    assert lease_remaining(server, lease) > 2.5

    register(server, "web", "plain", address="10.0.0.2", port=80)
    errors = [
        (f"{PREFIX}/web/instances/nobody/heartbeat", 404, "instance_not_found"),
        (f"{PREFIX}/web/instances/plain/heartbeat", 400, "invalid_request"),
        (f"{PREFIX}/w%20b/instances/a1/heartbeat", 400, "invalid_request"),
        (f"{PREFIX}/web/instances/a%2Fb/heartbeat", 404, None),  # no such route
    ]
    for error_path, status, code in errors:
        r = server.request("PUT", error_path)
        again = server.request("PUT", error_path + "?via=fastapi")
        assert r.status_code == again.status_code == status, (error_path, r.text)
        assert r.content == again.content
        if code is not None:
            assert r.json()["error"] == code and r.json()["message"], r.text
    assert server.request("PUT", f"{PREFIX}/web/instances/nobody/heartbeat").json() == {
        "error": "instance_not_found",
        "message": "no instance nobody of web",
    }


def _comparable(answer: dict[str, Any]) -> dict[str, Any]:
    skip = {"revision", "id", "registered_at", "health"}
    return {k: v for k, v in answer.items() if k not in skip}


def test_registration_answers_and_errors_match_the_fastapi_handler(server: ServerProcess) -> None:
    body = {
        "address": "10.0.0.1",
        "port": 8080,
        "weight": 2,
        "zone": "eu",
        "tags": ["v2"],
        "metadata": {"env": "prod"},
        "version": "1.2",
        # Nobody heartbeats these: the TTL must outlast the test on a loaded machine
        # (with 5 s, the instances expired before the last check under `-n 2`).
        "check": {"type": "ttl", "ttl": "60s"},
        "deregister_after": "1m",
        "status": "warning",
    }
    fast = register(server, "api", "f", **body)
    handled = register(server, "api", "h?via=fastapi", **body)  # declined: the handler
    assert fast["lease"] and handled["lease"] and fast["lease"] != handled["lease"]
    assert _comparable({**fast, "lease": 0}) == _comparable({**handled, "lease": 0})
    assert fast["weight"] == 2.0 and fast["deregister_after"] == 60.0
    assert fast["health"]["status"] == "warning"

    # A re-registration keeps the lease of a same-TTL check and the first registration time.
    again = register(server, "api", "f", **{**body, "metadata": {"env": "dev"}})
    assert again["lease"] == fast["lease"] and again["registered_at"] == fast["registered_at"]
    assert again["revision"] > fast["revision"]

    bad = [
        (b'{"address": "h"}', "port"),
        (b'{"address": "h", "port": 1, "colour": 1}', "colour"),
        (b'{"address": "h", "port": 1, "weight": -1}', "weight"),
        (b'{"address": "h", "port": 1, "tags": "v1"}', "tags"),
        (b'{"address": "h", "port": 1, "check": {"type": "gopher"}}', "check"),
        (b'{"address": "h", "port": 1, "deregister_after": "soon"}', "deregister_after"),
        (b'{"address": "h", "port": 1, "status": "fine"}', "status"),
        (b'{"address": "h", "port": 1, "status": {"a": 1}}', "status"),
        (b"[1, 2]", ""),
    ]
    bad += [
        (b'{"address": "h", "port": "8080"}', "port"),  # strict: never coerced
        (b'{"address": "h", "port": true}', "port"),
        (b'{"address": "\\ud800", "port": 1}', "address"),
        (b'{"address": "h", "port": 1, "check": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", ""),
    ]
    for content, where in bad:
        r = server.request("PUT", f"{PREFIX}/api/instances/x", content=content)
        handler = server.request("PUT", f"{PREFIX}/api/instances/x?via=fastapi", content=content)
        assert r.status_code == handler.status_code == 400, (content, r.text)
        assert r.content == handler.content  # one implementation of every error
        assert r.json()["error"] == "invalid_request" and where in r.json()["message"], r.text
    r = server.request(
        "PUT", f"{PREFIX}/api/instances/x", json={"address": "h", "port": 1, "lease": 77}
    )
    assert r.status_code == 404 and r.json() == {
        "error": "lease_not_found",
        "message": "lease 77 not found",
    }
    listed = server.get(f"{PREFIX}/api/instances").json()
    assert sorted(i["id"] for i in listed["instances"]) == ["f", "h"]  # nothing half-applied


def expected_discovery(s: ServerProcess, service: str, params: list[tuple[str, str]]) -> Any:
    """The discovery answer recomputed here from the raw records at its revision."""
    answer = s.get(f"{PREFIX}/{service}/instances", params=params).json()
    revision = answer["revision"]
    listing = s.get(
        "/api/v1/kv",
        params={"prefix": instances_prefix(service), "revision": revision, "limit": 10000},
    ).json()
    found = []
    for item in listing["kvs"]:
        if parse_instance_key(item["key"]) is not None:
            found.append((Instance.decode(item["value"].encode()), item))
    kvs = {i.id: kv for i, kv in found}
    settings = s.get(f"{PREFIX}/{service}/settings").json()
    threshold = settings["protect_threshold"]
    query = parse_filter([(k, v) for k, v in params if k != "consistency"])
    result = discover((i for i, _ in found), query, threshold)
    expected = {
        "service": service,
        "revision": revision,
        "protected": result.protected,
        "protect_threshold": threshold,
        "total": result.total,
        "healthy": result.healthy,
        "instances": [
            {
                **i.to_json(),
                "lease": kvs[i.id]["lease"],
                "mod_revision": kvs[i.id]["mod_revision"],
            }
            for i in result.instances
        ],
    }
    return answer, expected


def test_cached_discovery_follows_every_change_at_the_reported_revision(
    server: ServerProcess,
) -> None:
    for i in range(30):
        register(
            server,
            "shop",
            f"i{i:02d}",
            address=f"10.0.0.{i}",
            port=80,
            zone="eu" if i % 2 else "us",
        )
    queries: list[list[tuple[str, str]]] = [
        [],
        [("healthy", "true")],
        [("zone", "eu"), ("healthy", "true"), ("consistency", "stale")],
    ]

    def check_all() -> list[dict[str, Any]]:
        answers = []
        for params in queries:
            answer, expected = expected_discovery(server, "shop", params)
            assert answer == expected, params
            answers.append(answer)
        return answers

    first = check_all()
    path = f"{PREFIX}/shop/instances"
    assert server.get(path).content == server.get(path).content  # unchanged: same answer
    changed = register(server, "shop", "i05", address="10.0.0.5", port=80, status="critical")
    after = check_all()
    assert after[0]["revision"] >= changed["revision"] > first[0]["revision"]
    assert after[1]["healthy"] == 29 and "i05" not in [i["id"] for i in after[1]["instances"]]
    # The same number of instances, other content: a delete and a registration.
    r = server.request("DELETE", f"{PREFIX}/shop/instances/i07")
    assert r.status_code == 200, r.text
    register(server, "shop", "new", address="10.0.0.99", port=80)
    after = check_all()
    assert after[0]["total"] == 30 and "i07" not in [i["id"] for i in after[0]["instances"]]
    assert "new" in [i["id"] for i in after[0]["instances"]]
    r = server.request("PUT", f"{PREFIX}/shop/settings", json={"protect_threshold": 0.99})
    assert r.status_code == 200, r.text
    protected = check_all()[1]
    assert protected["protected"] is True and len(protected["instances"]) == 30
    r = server.request("DELETE", f"{PREFIX}/shop/instances/i09")
    assert r.status_code == 200, r.text
    assert check_all()[0]["total"] == 29

    for params, message in [
        ("healthy=perhaps", "healthy: must be true or false, got 'perhaps'"),
        ("colour=red", "colour: unknown query parameter (healthy, tag, zone, meta.k)"),
        ("consistency=bogus", "consistency: linearizable or stale"),
    ]:
        r = server.get(f"{path}?{params}")
        assert r.status_code == 400 and r.json()["message"] == message, r.text
    r = server.get(f"{PREFIX}/w%20b/instances")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text


def test_followers_forward_heartbeats_and_registrations_and_serve_discovery(
    tmp_path: Path,
) -> None:
    with local_cluster(tmp_path, 3) as cluster:
        leader = cluster.leader()
        follower = next(p for p in cluster.live() if p is not leader)
        wait_for(lambda: leader.get("/api/v1/cluster").json()["members"][0]["client_url"], 10)
        out = register(
            follower, "web", "f1", address="127.0.0.1", port=1, check={"type": "ttl", "ttl": "3s"}
        )
        lease = out["lease"]
        wait_for(lambda: lease_remaining(leader, lease) < 2.5, 5, what="the lease to run down")
        r = follower.request("PUT", f"{PREFIX}/web/instances/f1/heartbeat")
        assert r.status_code == 200, r.text
        assert r.json() == {"id": "f1", "lease": lease, "ttl": 3}
        assert lease_remaining(leader, lease) > 2.5  # the leader's lease, kept alive
        r = follower.request("PUT", f"{PREFIX}/web/instances/nobody/heartbeat")
        assert r.status_code == 404 and r.json()["error"] == "instance_not_found"

        # Discovery on the follower: linearizable sees the write at once; stale catches up;
        # both say the same as the leader at the same revision.
        linear = follower.get(f"{PREFIX}/web/instances").json()
        assert linear["revision"] >= out["revision"] and linear["total"] == 1

        def same_answer() -> bool:
            on_leader = leader.get(f"{PREFIX}/web/instances?healthy=true").json()
            stale = follower.get(f"{PREFIX}/web/instances?healthy=true&consistency=stale")
            return bool(stale.json() == on_leader)

        wait_for(same_answer, 10, what="the follower's stale answer to equal the leader's")
