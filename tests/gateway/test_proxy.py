"""The proxy against real processes: routing, rewrites, forwarding headers, framing, and
every error it answers itself. One control plane, three upstream instances and one
gateway are shared by the module (starting them is most of the time)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.testing import AppProcess, ServerProcess, uvicorn_command, wait_for

from .conftest import REPO, GatewayProcess, route

ROUTES: dict[str, Any] = {
    "defaults": {"policy": {"timeout": "5s", "attempt_timeout": "2s"}},
    "routes": [
        route("/api", strip_prefix=True, name="api"),
        route("/echo"),
        route("/download"),
        route("/upload"),
        route("/chunks"),
        route("/rr", rewrite_prefix="/echo/rr", policy={"balancer": "round_robin"}, name="rr"),
        route("/", host="admin.example.com", rewrite_prefix="/echo/admin", name="admin-host"),
        route("/", host="*.tenants.example.com", rewrite_prefix="/echo/tenant", name="tenants"),
        route(
            "/limited",
            rewrite_prefix="/echo/limited",
            rate_limit={"rate": 0.5, "burst": 2},
            name="limited",
        ),
        route(
            "/keyed",
            rewrite_prefix="/echo/keyed",
            rate_limit={"rate": 0.5, "burst": 1, "key": "header:x-api-key"},
            name="keyed",
        ),
        route("/small", rewrite_prefix="/upload", max_body=1000, name="small"),
        route("/nobody", service="ghost", name="ghost"),
        route(
            "/slow",
            service="sleepy",
            rewrite_prefix="/work",
            policy={"timeout": "1s", "attempt_timeout": "300ms", "max_attempts": 1},
            name="slow",
        ),
        route(
            "/headers",
            rewrite_prefix="/echo/h",
            request_headers={"set": {"x-team": "blog"}, "remove": ["x-secret"]},
            response_headers={"set": {"x-served-by": "gateway"}, "remove": ["server"]},
            name="headers",
        ),
    ],
}


class Stack:
    def __init__(self, server: ServerProcess, gateway: GatewayProcess) -> None:
        self.server, self.gateway = server, gateway
        self.client = httpx.Client(base_url=gateway.url, timeout=10)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway-proxy")
    server = ServerProcess("n1", tmp / "n1" / "data").start()
    apps: list[AppProcess] = []
    gateway: GatewayProcess | None = None
    try:
        server.wait_ready()
        for i, service in enumerate(("echo", "echo", "sleepy")):
            apps.append(
                AppProcess(
                    uvicorn_command("tests.gateway.apps.upstream:app", "--no-access-log"),
                    endpoints=server.url,
                    env={"UPSTREAM_SERVICE": service},
                    log=tmp / f"{service}-{i}.log",
                    cwd=REPO,
                )
            )
        for app in apps:
            app.wait_healthy()
        httpx.post(apps[2].url + "/admin/mode", json={"mode": "slow", "delay": 2.0}, timeout=5)
        gateway = GatewayProcess(tmp, server.url, ROUTES).wait_ready()
        stack = Stack(server, gateway)
        # Both echo instances in the gateway's view before the tests start.
        wait_for(
            lambda: len({i["id"] for i in _instances(gateway, "echo")}) == 2,
            20,
            what="both echo instances in the gateway's pool",
        )
        yield stack
        stack.client.close()
    finally:
        if gateway is not None:
            gateway.kill()
        for app in apps:
            app.kill()
        server.kill()


def _instances(gateway: GatewayProcess, service: str) -> list[dict[str, Any]]:
    return [i for u in gateway.upstreams() if u["service"] == service for i in u["instances"]]


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code, body
    message: str = body["message"]
    return message


def raw(port: int, data: bytes, *, wait_for_close: bool = True, timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection; everything read until close (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not wait_for_close:
                break
        return b"".join(chunks)


# -- routing -------------------------------------------------------------------------


def test_prefix_is_stripped_and_the_query_kept(stack: Stack) -> None:
    seen = stack.get("/api/echo/a/b", params={"q": "1"}).json()
    assert seen["path"] == "/echo/a/b"
    assert seen["query"] == "q=1"


def test_prefixes_match_whole_segments_only(stack: Stack) -> None:
    # /echox is not under /echo, and nothing else matches: the gateway's own 404.
    message = _error(stack.get("/echox"), 404, "no_route")
    assert "/echox" in message
    assert stack.get("/echo").status_code != 404  # /echo itself goes upstream (a redirect)
    assert "error" not in stack.get("/echo/x").json()


def test_host_routes_win_and_ignore_the_port(stack: Stack) -> None:
    seen = stack.get("/x", headers={"host": "Admin.Example.com:8080"}).json()
    assert seen["path"] == "/echo/admin/x"
    assert seen["headers"]["x-forwarded-host"] == "Admin.Example.com:8080"
    seen = stack.get("/y", headers={"host": "blue.tenants.example.com"}).json()
    assert seen["path"] == "/echo/tenant/y"
    # Other hosts fall back to the host-less routes.
    assert stack.get("/echo/z", headers={"host": "other.example.com"}).json()["path"] == "/echo/z"


def test_the_route_policy_balances_over_both_instances(stack: Stack) -> None:
    # Round robin (the route's policy): strictly alternating over the two instances.
    seen = [stack.get("/rr").json()["instance"] for _ in range(10)]
    assert len(set(seen)) == 2
    assert all(a != b for a, b in itertools.pairwise(seen))


# -- headers -------------------------------------------------------------------------


def test_forwarding_and_trace_headers(stack: Stack) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = stack.get(
        "/echo/t",
        headers={"x-forwarded-for": "203.0.113.9", "x-request-id": "req-42", "traceparent": trace},
    )
    seen = r.json()["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-request-id"] == "req-42"
    assert r.headers["x-request-id"] == "req-42"
    version, trace_id, span, flags = seen["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert span != "00f067aa0ba902b7"  # the gateway's own span


def test_a_request_without_ids_gets_new_ones(stack: Stack) -> None:
    r = stack.get("/echo/t")
    seen = r.json()["headers"]
    assert seen["x-request-id"] == r.headers["x-request-id"]
    version, trace_id, span, flags = seen["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert re.fullmatch("[0-9a-f]{32}", trace_id) and re.fullmatch("[0-9a-f]{16}", span)
    assert seen["x-request-id"] == trace_id[:16]  # as shoal.observe.trace makes it
    assert stack.get("/echo/t").json()["headers"]["traceparent"] != seen["traceparent"]
    assert seen["x-forwarded-for"] == "127.0.0.1"


def test_hop_by_hop_headers_are_dropped_and_rewrites_applied(stack: Stack) -> None:
    r = stack.get(
        "/headers",
        headers={
            "connection": "keep-alive, x-hop",
            "x-hop": "1",
            "x-secret": "s",
            "te": "trailers",
        },
    )
    seen = r.json()["headers"]
    assert "x-hop" not in seen and "te" not in seen and "x-secret" not in seen
    assert seen["x-team"] == "blog"
    assert r.headers["x-served-by"] == "gateway"
    assert "server" not in r.headers


# -- framing -------------------------------------------------------------------------


def test_keep_alive_connections_are_reused(stack: Stack) -> None:
    before = _connects(stack.gateway)
    with httpx.Client(base_url=stack.gateway.url) as client:
        for _ in range(50):
            assert client.get("/echo/k").status_code == 200
    assert _connects(stack.gateway) - before < 10  # 50 requests, a handful of connections


def _connects(gateway: GatewayProcess) -> float:
    total = 0.0
    for line in gateway.metrics().splitlines():
        if line.startswith("shoal_gateway_upstream_connects_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_chunked_upload_and_download_stream_through(stack: Stack) -> None:
    blocks = [bytes([i]) * 10_000 for i in range(30)]
    r = stack.client.post("/upload", content=iter(blocks))  # an iterator: chunked
    assert r.json() == {"bytes": 300_000, "sha256": hashlib.sha256(b"".join(blocks)).hexdigest()}
    r = stack.get("/chunks/5")
    assert r.text == "".join(f"part {i}\n" for i in range(5))
    assert r.headers["transfer-encoding"] == "chunked"


def test_head_has_no_body(stack: Stack) -> None:
    r = stack.client.head("/echo/h")
    assert r.status_code == 200 and r.content == b""
    # The connection is still usable afterwards.
    assert stack.get("/echo/after-head").status_code == 200


def test_expect_100_continue_is_answered_by_the_gateway(stack: Stack) -> None:
    port = stack.gateway.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 200")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["bytes"] == 5


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            ln.split(b":")[1]
            for ln in head.split(b"\r\n")
            if ln.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_pipelined_requests_are_answered_in_order(stack: Stack) -> None:
    requests = (
        b"".join(b"GET /echo/p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
        + b"GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data = raw(stack.gateway.port, requests)
    paths = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["path"]
             for part in data.split(b"HTTP/1.1 200 OK")[1:]]  # fmt: skip
    assert paths == ["/echo/p0", "/echo/p1", "/echo/p2", "/echo/last"]


def test_http_1_0_client_gets_a_close_delimited_or_sized_body(stack: Stack) -> None:
    data = raw(stack.gateway.port, b"GET /chunks/3 HTTP/1.0\r\nHost: x\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"part 0\npart 1\npart 2\n"


# -- the gateway's own answers -----------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(stack: Stack) -> None:
    statuses = [stack.get("/limited").status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    r = stack.get("/limited")
    message = _error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    assert "limited" in message and "0.5 requests/s" in message
    # The connection stays usable for other routes.
    assert stack.get("/echo/x").status_code == 200


def test_rate_limit_by_header_keeps_keys_apart(stack: Stack) -> None:
    assert stack.get("/keyed", headers={"x-api-key": "a"}).status_code == 200
    _error(stack.get("/keyed", headers={"x-api-key": "a"}), 429, "rate_limited")
    assert stack.get("/keyed", headers={"x-api-key": "b"}).status_code == 200


def test_oversize_body_gets_413(stack: Stack) -> None:
    message = _error(stack.client.post("/small", content=b"x" * 2000), 413, "body_too_large")
    assert "1000 bytes" in message and "small" in message
    chunked = stack.client.post("/small", content=iter([b"x" * 600, b"y" * 600]))
    _error(chunked, 413, "body_too_large")
    assert stack.client.post("/small", content=b"x" * 10).json()["bytes"] == 10


def test_no_healthy_upstream_gets_503(stack: Stack) -> None:
    message = _error(stack.get("/nobody"), 503, "no_healthy_upstream")
    assert "ghost" in message


def test_upstream_timeout_gets_504(stack: Stack) -> None:
    started = time.monotonic()
    message = _error(stack.get("/slow"), 504, "upstream_timeout")
    assert time.monotonic() - started < 1.5
    assert "sleepy" in message and "0.3 s" in message


def test_malformed_http_gets_400_and_disturbs_nothing_else(stack: Stack) -> None:
    with httpx.Client(base_url=stack.gateway.url) as other:
        assert other.get("/echo/before").status_code == 200
        data = raw(stack.gateway.port, b"GET /echo/x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert json.loads(body)["error"] == "bad_request"
        assert b"connection: close" in head
        garbage = raw(stack.gateway.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10)
        assert garbage.startswith(b"HTTP/1.1 400")
        assert other.get("/echo/after").status_code == 200  # the same kept-alive connection


def test_upgrade_is_refused_with_501(stack: Stack) -> None:
    data = raw(
        stack.gateway.port,
        b"GET /echo/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 501")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"] == "upgrade_not_supported"


# -- what operators see --------------------------------------------------------------


def test_access_log_and_metrics_name_the_route(stack: Stack) -> None:
    stack.get("/api/echo/logged", headers={"x-request-id": "logged-1"})
    path = Path(stack.gateway.access_log)

    def logged() -> dict[str, Any] | None:
        for line in path.read_text().splitlines():
            entry: dict[str, Any] = json.loads(line)
            if entry["request_id"] == "logged-1":
                return entry
        return None

    entry = wait_for(logged, 5, what="the access log line")
    assert entry["route"] == "api" and entry["status"] == 200 and entry["upstream"] == "echo"
    assert entry["path"] == "/api/echo/logged" and entry["attempts"] == 1
    # A rate-limited request of our own (the bucket may be drained already by another
    # test sharing this gateway, or not: xdist spreads the module's tests over workers).
    assert 429 in {stack.get("/limited").status_code for _ in range(5)}
    text = stack.gateway.metrics()
    assert 'shoal_gateway_requests_total{route="api",status="200",upstream="echo"}' in text
    assert 'shoal_gateway_rejected_total{reason="rate_limited",route="limited"}' in text
    routes = httpx.get(stack.gateway.admin + "/routes").json()
    assert {r["name"] for r in routes["routes"]} >= {"api", "limited", "slow"}
