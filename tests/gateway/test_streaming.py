"""Large bodies stream through in constant memory, with flow control both ways.

20 MB each way here (the 200 MB runs are in bench/gateway.py --soak); the gateway's RSS
may not grow by more than a fraction of the body, and a client that stops reading must
make the gateway stop reading from the upstream rather than buffer the rest."""

from __future__ import annotations

import hashlib
import socket
import time

import httpx
import psutil

from shoal.testing import wait_for

from .conftest import GatewayFactory, GatewayProcess, UpstreamFactory, route

SIZE = 20 * 1024 * 1024
GROWTH_LIMIT = 8 * 1024 * 1024  # well under the 20 MB body


def _rss(gw: GatewayProcess) -> int:
    rss: int = psutil.Process(gw.proc.pid).memory_info().rss
    return rss


def _ready(upstreams: UpstreamFactory, gateway: GatewayFactory) -> GatewayProcess:
    upstreams(1)
    policy = {"timeout": "60s", "attempt_timeout": "30s"}
    gw = gateway({"defaults": {"max_body": "1GB", "policy": policy}, "routes": [route("/")]})
    wait_for(lambda: httpx.get(gw.url + "/work", timeout=2).status_code == 200, 20, what="up")
    return gw


def test_20mb_upload_and_download_in_constant_memory(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw = _ready(upstreams, gateway)
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        client.get("/download/1000000").read()  # warm up: pools, buffers, first allocations
        before = _rss(gw)
        digest, size = hashlib.sha256(), 0
        with client.stream("GET", f"/download/{SIZE}") as r:
            for chunk in r.iter_bytes():
                digest.update(chunk)
                size += len(chunk)
        assert size == SIZE
        assert digest.hexdigest() == hashlib.sha256(b"x" * SIZE).hexdigest()
        block = b"y" * (1024 * 1024)
        r = client.post("/upload", content=iter([block] * 20))  # chunked, 20 MB
        assert r.json() == {"bytes": SIZE, "sha256": hashlib.sha256(block * 20).hexdigest()}
        r = client.post("/upload", content=block * 20)  # Content-Length, 20 MB
        assert r.json()["bytes"] == SIZE
        grown = _rss(gw) - before
    assert grown < GROWTH_LIMIT, f"gateway RSS grew by {grown / 1e6:.1f} MB"


def test_a_client_that_stops_reading_stops_the_upstream(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw = _ready(upstreams, gateway)
    before = _rss(gw)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET /download/{SIZE} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = len(sock.recv(65536))
        # Reading stops here. Without flow control the gateway would now take the whole
        # body from the upstream into memory; with it, the kernel buffers fill and stop.
        deadline = time.monotonic() + 1.0
        peak = before
        while time.monotonic() < deadline:
            peak = max(peak, _rss(gw))
            time.sleep(0.05)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
            if got >= SIZE:  # head + body: at least the body's size
                break
    assert got >= SIZE
    assert peak - before < GROWTH_LIMIT, f"buffered {(peak - before) / 1e6:.1f} MB"
