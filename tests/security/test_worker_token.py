"""A `shoal worker --token` refuses a driver with no token or a bad one before it reads
any job data (no HELLO, no slot process: one REFUSED frame, and the connection closed)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from shoal.compute._frames import AUTH, HEADER, HELLO, REFUSED, RUN, frame
from shoal.testing import ServerProcess, free_port, wait_for

TOKEN = "s3cret-worker-token"


@pytest.fixture(scope="module")
def worker_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("worker-token")
    server = ServerProcess("n1", root / "n1" / "data").start()
    port = free_port()
    log = (root / "worker.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal.cli.main", "worker", "--server", server.url,
         "--id", "w1", "--port", str(port), "--no-metrics", "--token", TOKEN],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "SHOAL_TOKEN"},
    )  # fmt: skip
    log.close()
    try:
        server.wait_ready(60)
        url = f"{server.url}/api/v1/services/shoal-workers/instances"
        wait_for(lambda: httpx.get(url, timeout=5).json().get("instances"), 90, 0.1, "w1")
        yield port
    finally:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        server.kill()


def first_bytes(port: int, *frames: bytes, until_closed: bool = True) -> bytes:
    """What the worker sends back after `frames`, until it closes (or 8 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=8) as sock:
        for data in frames:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(data)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while (until_closed or len(received) < HEADER.size) and (chunk := sock.recv(4096)):
                received += chunk
        return received


def refused(answer: bytes) -> bool:
    """Whether `answer` is exactly one REFUSED frame (and so no HELLO, no slot)."""
    if len(answer) < HEADER.size:
        return False
    size, kind, _, _ = HEADER.unpack_from(answer)
    return kind == REFUSED and len(answer) == HEADER.size + size


def test_a_driver_without_a_token_is_closed_before_any_job_data(worker_port: int) -> None:
    run = frame(RUN, 0, 1, b"\x80\x04 pickled job data the worker must never relay")
    assert refused(first_bytes(worker_port, run))


@pytest.mark.parametrize("token", [b"wrong", b"", TOKEN.encode() + b"x", TOKEN.encode()[:-1]])
def test_a_driver_with_a_bad_token_is_closed(worker_port: int, token: bytes) -> None:
    assert refused(first_bytes(worker_port, frame(AUTH, 0, 0, token), frame(RUN, 0, 1, b"x")))


def test_an_oversized_token_frame_is_not_read(worker_port: int) -> None:
    header = HEADER.pack(10_000_000, AUTH, 0, 0)
    assert refused(first_bytes(worker_port, header))


def test_a_driver_with_the_token_gets_the_workers_hello(worker_port: int) -> None:
    answer = first_bytes(worker_port, frame(AUTH, 0, 0, TOKEN.encode()), until_closed=False)
    assert len(answer) >= HEADER.size
    assert HEADER.unpack(answer[: HEADER.size])[1] == HELLO
