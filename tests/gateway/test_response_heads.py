"""Response heads as upstreams really send them, relayed through a real gateway.

The gateway passes on an upstream's header lines less the hop-by-hop ones; these
upstreams (a raw socket server on loopback, registered as a plain record) send what
that must survive: a head split over several TCP segments, a 100 Continue before the
answer, names in odd case, blanks around values, a Connection header naming another
header, no header at all, a folded (obs-fold) line (which httptools refuses: a 502).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from shoal.client import ControlPlane
from shoal.testing import ServerProcess, wait_for

from .conftest import GatewayFactory, route


class RawUpstream:
    """Answers every request on a connection with `pieces`, sent apart (keep-alive);
    with `close_after`, closes the connection once they are sent."""

    def __init__(self, close_after: bool = False) -> None:
        self.pieces: list[bytes] = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
        self.close_after = close_after
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffered += data
                while b"\r\n\r\n" in buffered:  # requests without a body (GETs)
                    request, buffered = buffered.split(b"\r\n\r\n", 1)
                    self.requests += 1
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    # A HEAD is answered with the first piece alone: a head, no body.
                    head = request.startswith(b"HEAD ")
                    for piece in self.pieces[:1] if head else self.pieces:
                        conn.sendall(piece)
                        if self.close_after:
                            conn.shutdown(socket.SHUT_RDWR)
                            return
                        time.sleep(0.01)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    with ControlPlane(server.url) as cp:
        cp.registry.register("raw", "raw-1", address="127.0.0.1", port=upstream.port)
    try:
        yield upstream
    finally:
        upstream.close()


def _get(gateway_url: str) -> httpx.Response:
    return httpx.get(gateway_url + "/x", timeout=10)


def test_odd_response_heads_are_relayed_right(raw: RawUpstream, gateway: GatewayFactory) -> None:
    policy = {"outlier": False, "breaker": False}
    gw = gateway({"routes": [route("/", service="raw", policy=policy)]})
    wait_for(lambda: _get(gw.url).status_code in (200, 502), 20, what="the raw upstream routed")

    # Split inside the status line, inside a header, and before the blank line; after
    # a 100 Continue; names in odd case, blanks around the values.
    raw.pieces = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2",
        b"00 OK\r\nX-One:  first \r\nCONTENT-LENGTH: 5\r\nx-Two:second",
        b"\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n",
        b"\r\nhello",
    ]
    answer = _get(gw.url)
    assert answer.status_code == 200 and answer.text == "hello"
    assert answer.headers["x-one"] == "first" and answer.headers["x-two"] == "second"
    assert answer.headers["content-length"] == "5"
    assert "keep-alive" not in answer.headers
    assert answer.headers.get("connection") in (None, "keep-alive")

    # A Connection header naming another one: both are hop-by-hop, dropped.
    raw.pieces = [
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
        b"X-Public: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"3\r\nabc\r\n0\r\n\r\n",
    ]
    answer = _get(gw.url)
    assert answer.status_code == 200 and answer.text == "abc"
    assert "x-secret" not in answer.headers and answer.headers["x-public"] == "2"
    assert answer.headers["transfer-encoding"] == "chunked"

    # No header at all: the body ends with the connection, relayed chunked.
    raw.pieces = [b"HTTP/1.1 204 No Content\r\n\r\n"]
    answer = _get(gw.url)
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["x-request-id"]

    # Many requests on the kept connections: nothing left over from an earlier answer.
    raw.pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-N: 1\r\n\r\nok"]
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        for _ in range(20):
            answer = client.get("/x")
            assert (answer.status_code, answer.text, answer.headers["x-n"]) == (200, "ok", "1")


def test_a_folded_header_line_is_unfolded(raw: RawUpstream, gateway: GatewayFactory) -> None:
    gw = gateway({"routes": [route("/", service="raw")]})
    raw.pieces = [
        b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nContent-Length: 2\r\n\r\nok",
    ]
    wait_for(lambda: _get(gw.url).status_code in (200, 502), 20, what="the raw upstream routed")
    answer = _get(gw.url)
    if answer.status_code == 502:
        # The parser refused the fold (a strict llhttp): an answer, not a broken relay.
        assert "malformed" in answer.text
        return
    assert answer.status_code == 200 and answer.text == "ok"
    assert answer.headers["x-folded"] == "one two"


def test_an_instance_that_dies_between_its_head_and_its_body_is_retried(
    server: ServerProcess, gateway: GatewayFactory
) -> None:
    """uvicorn writes a head and its body apart; a SIGKILL between the two must not reach
    the client as a cut-off body when the request can be sent again."""
    dying, whole = RawUpstream(close_after=True), RawUpstream()
    dying.pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 49\r\n\r\n"]  # then it is gone
    whole.pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"whole"]
    with ControlPlane(server.url) as cp:
        cp.registry.register("flaky", "dying", address="127.0.0.1", port=dying.port)
        cp.registry.register("flaky", "whole", address="127.0.0.1", port=whole.port)
    try:
        # Round robin: every other first attempt goes to the dying instance.
        policy = {"balancer": "round_robin", "outlier": False, "breaker": False}
        gw = gateway({"routes": [route("/", service="flaky", policy=policy)]})
        wait_for(lambda: _get(gw.url).status_code == 200, 20, what="the flaky service routed")
        dying.requests = 0
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            for _ in range(20):
                answer = client.get("/x")
                assert (answer.status_code, answer.text) == (200, "whole")
                head = client.head("/x")
                assert head.status_code == 200
        assert dying.requests >= 10, "the balancer did not try the dying instance"
    finally:
        dying.close()
        whole.close()
