"""The async shell's lean wire (`shoal.client.aiowire`) against a real member and against
raw sockets that misbehave: reuse, limits, timeouts, refused and cut connections."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shoal.client import AsyncControlPlane, NotFound, Unavailable
from shoal.client.aiowire import MAX_CONNECTIONS, Wire
from shoal.testing import ServerProcess


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess("n1", Path(tmp_path_factory.mktemp("wire")) / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def _open_connections(wire: Wire) -> int:
    return sum(len(endpoint.idle) for endpoint in wire._endpoints.values())


def test_calls_reuse_one_connection_and_answer_like_the_httpx_shell(
    member: ServerProcess,
) -> None:
    async def scenario() -> None:
        async with AsyncControlPlane(member.url, wire=True) as cp:
            assert cp._wire is not None
            first = await cp.put("/wire/a", 'ü and "quotes"')
            assert (await cp.get("/wire/a")).value == 'ü and "quotes"'  # type: ignore[union-attr]
            assert await cp.get("/wire/missing") is None  # a 404 that is an answer
            with pytest.raises(NotFound):
                await cp.time_to_live(987654321)
            page = await cp.list("/wire/", limit=5)  # query parameters
            assert [kv.key for kv in page.kvs] == ["/wire/a"]
            assert await cp.put("/wire/a", "2") > first
            assert _open_connections(cp._wire) == 1  # sequential calls: one connection

    asyncio.run(scenario())


def test_concurrent_calls_open_at_most_the_limit_and_all_land(member: ServerProcess) -> None:
    async def scenario() -> None:
        async with AsyncControlPlane(member.url, wire=True) as cp:
            assert cp._wire is not None
            revisions = await asyncio.gather(
                *(cp.put(f"/wire/c/{i}", str(i)) for i in range(3 * MAX_CONNECTIONS // 2))
            )
            assert len(set(revisions)) == len(revisions)
            assert 1 <= _open_connections(cp._wire) <= 32
            page = await cp.list("/wire/c/", limit=1000)
            assert len(page.kvs) == 3 * MAX_CONNECTIONS // 2

    asyncio.run(scenario())


# The first loop's idle connection cannot be closed once asyncio.run closed that loop (its
# transport warns when collected); httpx fails outright here ("Event loop is closed").
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_client_works_across_two_event_loops(member: ServerProcess) -> None:
    cp = AsyncControlPlane(member.url, wire=True)
    assert asyncio.run(cp.put("/wire/loop", "1")) > 0
    assert asyncio.run(cp.put("/wire/loop", "2")) > 0  # the first loop's connection is gone
    gc.collect()  # (its warning, here where it is filtered)

    async def close() -> None:
        await cp.aclose()

    asyncio.run(close())
    gc.collect()


def test_a_refused_endpoint_is_skipped_for_the_next(member: ServerProcess) -> None:
    async def scenario() -> int:
        # Nothing listens on port 1: refused, nothing sent, so even a txn moves on.
        async with AsyncControlPlane(f"http://127.0.0.1:1,{member.url}", wire=True) as cp:
            answer = await cp.txn([], [{"put": {"key": "/wire/t", "value": "1"}}], [])
            return int(answer["revision"])

    assert asyncio.run(scenario()) > 0


class _Misbehaving:
    """A loopback server that reads a request, then does `what`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            conn.recv(65536)
            if self.what == "cut":  # half an answer, then gone
                conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"rev')
                conn.close()
            elif self.what == "garbage":
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            # "silent": never answers

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.parametrize(
    ("what", "says"),
    [
        ("silent", "did not answer in time"),
        ("cut", "closed the connection"),
        ("garbage", "malformed response"),
    ],
)
def test_a_misbehaving_server_is_an_unavailable_error_that_says_why(what: str, says: str) -> None:
    server = _Misbehaving(what)

    async def scenario() -> None:
        # retry_budget 0: one attempt, so the error is the wire's own
        async with AsyncControlPlane(server.url, timeout=0.5, retry_budget=0, wire=True) as cp:
            started = time.monotonic()
            with pytest.raises(Unavailable, match=says) as caught:
                await cp.txn([], [{"put": {"key": "k", "value": "v"}}], [])
            assert caught.value.request_sent  # it may have arrived: not repeated blindly
            assert time.monotonic() - started < 5

    try:
        asyncio.run(scenario())
    finally:
        server.close()


def test_the_wire_is_on_by_default_and_off_with_the_environment_or_a_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SHOAL_CLIENT_WIRE", raising=False)
    assert AsyncControlPlane("http://127.0.0.1:1")._wire is not None
    assert AsyncControlPlane("http://127.0.0.1:1", wire=False)._wire is None
    transport = httpx.AsyncHTTPTransport()
    assert AsyncControlPlane("http://127.0.0.1:1", transport=transport)._wire is None
    monkeypatch.setenv("SHOAL_CLIENT_WIRE", "0")
    assert AsyncControlPlane("http://127.0.0.1:1")._wire is None
