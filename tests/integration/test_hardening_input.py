"""Hostile and careless input against a real `shoal server` (issue 17, items 1, 3-6, 9).

Each case here was a defect reproduced against a real member before it was fixed: a 500,
a record that broke every later read, a silently coerced type, two keys that aliased, a
chunked body read whole. Every answer must be a 4xx `{"error", "message"}` that names what
is wrong, nothing may be half-applied, and the fast path (fastpath.py) and the FastAPI
handlers must answer the same request the same way (`?via=fastapi` makes the fast path
decline a request, so the two can be compared).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.testing import ServerProcess, wait_for

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One member for the whole module: these tests only add state, never depend on less."""
    root: Path = tmp_path_factory.mktemp("hardening")
    proc = ServerProcess("n1", root / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def send(s: ServerProcess, method: str, path: str, body: bytes = b"") -> Any:
    r = s.request(method, path, content=body, headers={"content-type": "application/json"})
    return r


def assert_error(r: Any, status: int, code: str, *words: str) -> None:
    assert r.status_code == status, r.text
    data = r.json()
    assert data["error"] == code and data["message"], data
    for word in words:
        assert word in data["message"], data


# -- item 1: text that cannot be rendered is refused before anything is written -----------

SURROGATE = b'"\\ud800"'
INSTANCE_FIELDS = [
    b'{"address": %s, "port": 80}' % SURROGATE,
    b'{"address": "h", "port": 80, "zone": %s}' % SURROGATE,
    b'{"address": "h", "port": 80, "version": %s}' % SURROGATE,
    b'{"address": "h", "port": 80, "tags": ["ok", %s]}' % SURROGATE,
    b'{"address": "h", "port": 80, "metadata": {"env": %s}}' % SURROGATE,
    b'{"address": "h", "port": 80, "check": {"type": "http", "path": "/%s"}}'
    % SURROGATE.strip(b'"'),
]


@pytest.mark.parametrize("body", INSTANCE_FIELDS)
@pytest.mark.parametrize("via", ["", "?via=fastapi"])
def test_registration_with_a_lone_surrogate_is_refused_and_discovery_keeps_working(
    member: ServerProcess, body: bytes, via: str
) -> None:
    r = send(member, "PUT", f"/api/v1/services/sur/instances/i1{via}", body)
    assert_error(r, 400, "invalid_request", "surrogate")
    found = member.get("/api/v1/services/sur/instances")
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 0  # nothing was committed
    assert member.get("/api/v1/services/sur/instances?healthy=true").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"content": "a", "author": %s}' % SURROGATE,
        b'{"content": "a", "message": %s}' % SURROGATE,
        b'{"content": %s}' % SURROGATE,
    ],
)
def test_config_text_with_a_lone_surrogate_is_refused(member: ServerProcess, body: bytes) -> None:
    r = send(member, "PUT", "/api/v1/config/ns/sur", body)
    assert_error(r, 400, "invalid_request", "surrogate")
    assert member.get("/api/v1/config/ns/sur").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/v1/kv/k", b'{"value": %s}' % SURROGATE),
        ("PUT", "/api/v1/kv/k?via=fastapi", b'{"value": %s}' % SURROGATE),
        ("POST", "/api/v1/txn", b'{"success": [{"put": {"key": %s, "value": "v"}}]}' % SURROGATE),
        ("PUT", "/api/v1/kv/k", b'{"value": "\xed\xa0\x80"}'),  # the same, as raw bytes
    ],
)
def test_kv_text_with_a_lone_surrogate_is_refused(
    member: ServerProcess, method: str, path: str, body: bytes
) -> None:
    assert_error(send(member, method, path, body), 400, "invalid_request")


def test_a_pair_of_surrogates_is_one_character_and_fine(member: ServerProcess) -> None:
    r = send(member, "PUT", "/api/v1/kv/emoji", b'{"value": "\\ud83d\\ude00"}')
    assert r.status_code == 200, r.text
    assert member.get("/api/v1/kv/emoji").json()["value"] == "\U0001f600"


# -- item 3: the body limit holds while reading, chunked or not ---------------------------


def _chunked_put(port: int, path: str, chunks: int, chunk: bytes) -> tuple[bytes, int]:
    """PUT a chunked body; returns the response head and how many chunks went out."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for _ in range(chunks):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += 1
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: exactly what should happen
        response = b""
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    return response, sent


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/kv/big",
        "/api/v1/txn",
        "/api/v1/services/big/instances/i1",
        "/api/v1/config/ns/big",
    ],
)
def test_a_chunked_body_over_the_limit_is_refused_while_reading(
    member: ServerProcess, path: str
) -> None:
    # 100 MiB offered; the member must answer 413 and hang up long before taking it all.
    response, sent = _chunked_put(member.client_port, path, 100, b"x" * MIB)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"body_too_large" in response
    assert sent < 100, "the member read the whole 100 MiB before refusing it"
    assert member.get("/healthz").status_code == 200


def test_a_chunked_body_under_the_limit_is_served(member: ServerProcess) -> None:
    response, _ = _chunked_put(member.client_port, "/api/v1/kv/chunked", 1, b'{"value": "v"}')
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert member.get("/api/v1/kv/chunked").json()["value"] == "v"


# -- item 4: deep nesting is a 400, never a RecursionError --------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/v1/kv/deep", b'{"value": %s}' % DEEP),
        ("PUT", "/api/v1/kv/deep?via=fastapi", b'{"value": %s}' % DEEP),
        ("PUT", "/api/v1/services/deep/instances/i1", b'{"address": "h", "check": %s}' % DEEP),
        ("POST", "/api/v1/txn", b'{"compare": %s}' % DEEP),
        ("POST", "/api/v1/leases", DEEP),
    ],
)
def test_deeply_nested_json_is_a_400(
    member: ServerProcess, method: str, path: str, body: bytes
) -> None:
    assert_error(send(member, method, path, body), 400, "invalid_request", "nested")


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("toml", "a = " + "[" * 100_000 + "]" * 100_000),
        ("json", "[" * 100_000 + "]" * 100_000),
        ("yaml", "[" * 100_000 + "]" * 100_000),
    ],
)
def test_deeply_nested_config_content_is_a_400(
    member: ServerProcess, fmt: str, content: str
) -> None:
    r = member.request("PUT", "/api/v1/config/ns/deep", json={"content": content, "format": fmt})
    assert_error(r, 400, "invalid_content", "nested")


# -- item 5: a wrong type is refused, never coerced ---------------------------------------

INSTANCE = "/api/v1/services/t/instances/i1"
WRONG_TYPES = [
    ("POST", "/api/v1/leases", {"ttl": True}, "ttl"),
    ("POST", "/api/v1/leases", {"ttl": "5"}, "ttl"),
    ("POST", "/api/v1/leases", {"ttl": 5.0}, "ttl"),
    ("PUT", "/api/v1/kv/t", {"value": "v", "prev_kv": "yes"}, "prev_kv"),
    ("PUT", "/api/v1/kv/t", {"value": "v", "prev_kv": 1}, "prev_kv"),
    ("PUT", "/api/v1/kv/t", {"value": "v", "lease": "1"}, "lease"),
    ("PUT", INSTANCE, {"address": "h", "port": True}, "port"),
    ("PUT", INSTANCE, {"address": "h", "port": "80"}, "port"),
    ("PUT", INSTANCE, {"address": "h", "port": 80.0}, "port"),
    ("PUT", INSTANCE, {"address": "h", "port": 1, "weight": "2"}, "weight"),
    ("PUT", INSTANCE, {"address": "h", "port": 1, "tags": [1]}, "tags"),
    ("PUT", "/api/v1/services/t/settings", {"protect_threshold": "0.5"}, "protect_threshold"),
    ("POST", "/api/v1/cluster/members", {"name": "x", "peer_addr": "h:1", "learner": 0}, "learner"),
    ("POST", "/api/v1/compact", {"revision": "1"}, "revision"),
    ("POST", "/api/v1/txn", {"success": [{"get": {"key": "a", "limit": "1"}}]}, "limit"),
    ("PUT", "/api/v1/config/ns/t", {"content": "a", "expect_version": "0"}, "expect_version"),
    ("PUT", "/api/v1/config/ns/t", {"content": 5}, "content"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), WRONG_TYPES)
def test_a_wrong_type_is_a_400_naming_the_field(
    member: ServerProcess, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    r = member.request(method, path, json=body)
    assert_error(r, 400, "invalid_request", field)
    # Nothing half-applied: none of these requests wrote anything.
    assert member.get("/api/v1/kv/t").status_code == 404
    assert member.get("/api/v1/services/t/instances").json()["total"] == 0
    assert member.get("/api/v1/config/ns/t").status_code == 404
    names = [m["name"] for m in member.get("/api/v1/cluster").json()["members"]]
    assert names == ["n1"]


def test_integers_are_still_numbers_where_a_number_is_asked(member: ServerProcess) -> None:
    body = {"address": "h", "port": 80, "weight": 2, "deregister_after": 60}
    r = member.request("PUT", "/api/v1/services/num/instances/i1?via=fastapi", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["weight"] == 2.0 and r.json()["deregister_after"] == 60.0


# -- item 6: keys are the bytes the client sent, or refused --------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/kv/a%FF"),
        ("GET", "/api/v1/kv/a%FE"),
        ("DELETE", "/api/v1/kv/a%FE"),
        ("GET", "/api/v1/kv?prefix=a%FF"),
        ("DELETE", "/api/v1/kv?prefix=a%FF"),
        ("GET", "/api/v1/watch?prefix=%C3"),
        ("PUT", "/api/v1/services/web/instances/a%FF"),
    ],
)
def test_invalid_utf8_in_a_path_or_query_is_a_400(
    member: ServerProcess, method: str, path: str
) -> None:
    r = send(member, method, path, b'{"value": "1"}' if method == "PUT" else b"")
    assert_error(r, 400, "invalid_request", "UTF-8")


def test_valid_percent_encoded_utf8_keys_are_distinct(member: ServerProcess) -> None:
    assert send(member, "PUT", "/api/v1/kv/u%C3%A9", b'{"value": "e-acute"}').status_code == 200
    assert send(member, "PUT", "/api/v1/kv/u%C3%A8", b'{"value": "e-grave"}').status_code == 200
    assert member.get("/api/v1/kv/u\u00e9").json()["value"] == "e-acute"
    assert member.get("/api/v1/kv/u\u00e8").json()["value"] == "e-grave"


# -- item 9: peer addresses are host:port or refused ---------------------------------------


@pytest.mark.parametrize(
    "peer_addr",
    ["n/:7", "h\u00e9:7", "a b:7", ":7", "h:0", "h:65536", "h:7 ", "[::1:7", "h..x:7", "-h:7"],
)
def test_a_malformed_peer_address_is_refused(member: ServerProcess, peer_addr: str) -> None:
    r = member.request(
        "POST", "/api/v1/cluster/members", json={"name": "bad", "peer_addr": peer_addr}
    )
    assert_error(r, 400, "invalid_request", "peer_addr")
    r = member.request(
        "PUT",
        "/api/v1/cluster/members/n1/address",
        json={"client_url": "http://127.0.0.1:1", "peer_addr": peer_addr},
    )
    assert_error(r, 400, "invalid_request", "peer_addr")


@pytest.mark.parametrize("peer_addr", ["127.0.0.1:7", "[::1]:7", "node-2.example:7"])
def test_a_well_formed_learner_address_is_accepted(member: ServerProcess, peer_addr: str) -> None:
    name = f"ok{abs(hash(peer_addr)) % 1000}"
    r = member.request(
        "POST", "/api/v1/cluster/members", json={"name": name, "peer_addr": peer_addr}
    )
    assert r.status_code == 200, r.text

    def removed() -> bool:  # refused (409) until the addition has committed
        r = member.request("DELETE", f"/api/v1/cluster/members/{name}")
        assert r.status_code in (200, 409), r.text
        return r.status_code == 200

    wait_for(removed, 10, what=f"learner {name} removed")
    assert member.get("/healthz").status_code == 200
    assert member.request("PUT", "/api/v1/kv/after-learner", json={"value": "v"}).status_code == 200


# -- errors outside the routes share the shape ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/nope", 404, "not_found"), ("PATCH", "/api/v1/kv/x", 405, "method_not_allowed")],
)
def test_unknown_routes_and_methods_answer_the_error_shape(
    member: ServerProcess, method: str, path: str, status: int, code: str
) -> None:
    assert_error(send(member, method, path), status, code)


@pytest.mark.parametrize(
    "body",
    [
        b'{"value": "v", "prev_kv": "yes"}',
        b'{"value": "v", "lease": true}',
        b'{"value": %s}' % SURROGATE,
        b'{"value": ' + DEEP + b"}",
        b'{"value": "v"',
        b'{"value": "\xff"}',
    ],
)
def test_the_fast_path_and_fastapi_answer_a_bad_put_byte_for_byte_alike(
    member: ServerProcess, body: bytes
) -> None:
    fast = send(member, "PUT", "/api/v1/kv/same", body)
    slow = send(member, "PUT", "/api/v1/kv/same?via=fastapi", body)
    assert fast.status_code == slow.status_code == 400, fast.text
    assert fast.content == slow.content
