"""Connections that hold a member's resources without completing requests (issue 17,
item 7): headers sent a byte at a time, a silent socket, a stalled body, and more
connections than allowed -- each on a real member over real sockets, while other clients
keep being served."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.testing import ServerProcess, wait_for

HEADER_TIMEOUT = 2.0
# A generous allowance for a loaded machine; the old behaviour was "never".
SLACK = 3.0


@pytest.fixture
def member(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "n1",
        tmp_path / "n1" / "data",
        extra=["--header-timeout", str(HEADER_TIMEOUT), "--max-connections", "8"],
    ).start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def _connect(s: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", s.client_port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout(
    member: ServerProcess,
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    sock = _connect(member)
    started = time.monotonic()
    closed_after = None
    with sock:
        for byte in request:  # one byte every 50 ms: 50 s for the whole header
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            # Other clients are served meanwhile.
            if byte == ord("a") and time.monotonic() - started < HEADER_TIMEOUT / 2:
                assert member.get("/healthz", timeout=5).status_code == 200
            sock.settimeout(0.05)
            try:
                if sock.recv(65536, socket.MSG_PEEK) is not None:
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            finally:
                sock.settimeout(15)
        assert closed_after is not None, "the slow client was never cut off"
        answer = _read_until_closed(sock)
    assert HEADER_TIMEOUT - 0.5 <= closed_after < HEADER_TIMEOUT + SLACK, closed_after
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == "request_timeout" and body["message"]
    assert member.get("/healthz").status_code == 200


def test_a_silent_connection_and_a_stalled_body_are_closed(member: ServerProcess) -> None:
    silent, stalled = _connect(member), _connect(member)
    started = time.monotonic()
    with silent, stalled:
        stalled.sendall(
            b"PUT /api/v1/kv/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            b'{"value": "v"}'  # 14 of the promised 100 bytes, then nothing
        )
        assert _read_until_closed(silent).startswith(b"HTTP/1.1 408")
        _read_until_closed(stalled)
        assert time.monotonic() - started < 2 * HEADER_TIMEOUT + SLACK
    # The part of the body that arrived was not acted on.
    assert member.get("/api/v1/kv/stalled").status_code == 404


def test_connections_beyond_the_limit_are_refused_and_others_still_served(
    member: ServerProcess,
) -> None:
    held = []
    try:
        # Keep-alive connections that finished a request: idle, not timed out yet.
        for _ in range(8):
            sock = _connect(member)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(sock)
        extra = _connect(member)
        with extra:
            answer = _read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "unavailable"
    finally:
        for sock in held:
            sock.close()
    # Once they go, new clients are served again.
    wait_for(lambda: member.get("/healthz").status_code == 200, 10, what="a served request")
