"""Jobs on secured workers, end to end: a TLS+ACL control plane, `shoal worker`s with TLS
(client certificates required) and a driver token. `ShoalExecutor(token=..., tls=...)`
runs a job to the right result; a wrong token, a missing certificate or a driver without
TLS gets an `ExecutorError` that says what is wrong, soon, not a hang; no job data reaches
a worker's slot processes before the driver is authenticated."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from shoal.compute import ExecutorError, Job
from shoal.compute._frames import AUTH, HEADER, HELLO, REFUSED, RUN, frame
from shoal.compute.shoal_executor import ShoalExecutor
from shoal.compute.worker_tls import WorkerTls
from shoal.security.certs import init_certs
from shoal.testing import ServerProcess, ServerTls, free_port, wait_for
from tests.compute import tasks

REPO = Path(__file__).resolve().parents[2]
WORKER_TOKEN = secrets.token_hex(16)  # the drivers' secret; not an ACL token
STARTUP = 90.0


@dataclass
class Secured:
    server: ServerProcess
    certs: Path
    port: int  # the worker's

    @property
    def ca(self) -> str:
        return str(self.certs / "ca.pem")

    def driver_tls(self, with_cert: bool = True) -> WorkerTls:
        if not with_cert:
            return WorkerTls(self.ca)
        return WorkerTls(
            self.ca, str(self.certs / "client.pem"), str(self.certs / "client-key.pem")
        )

    def executor(self, **options: object) -> ShoalExecutor:
        options.setdefault("wait_for_workers", STARTUP)
        return ShoalExecutor(self.server.url, record=False, **options)  # type: ignore[arg-type]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("worker-tls")
    issued = init_certs(root / "certs")
    tls = ServerTls(issued.ca, issued.member_cert, issued.member_key)
    server = ServerProcess("n1", root / "n1" / "data", tls=tls, token=secrets.token_hex(32))
    server.start()
    port = free_port()
    log = (root / "worker.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal.cli.main", "worker", "--server", server.url, "--id", "w1",
         "--port", str(port), "--no-metrics", "--token", WORKER_TOKEN,
         "--tls-cert", str(issued.member_cert), "--tls-key", str(issued.member_key),
         "--tls-ca", str(issued.ca), "--client-cert-required"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
        env={**_clean_env(), **server.env()},  # its registry calls: the ACL token, the CA
    )  # fmt: skip
    log.close()
    try:
        server.wait_ready(60)
        url = "/api/v1/services/shoal-workers/instances"
        wait_for(lambda: server.get(url).json().get("instances"), STARTUP, 0.1, "w1")
        with mock.patch.dict(os.environ, {**_clean_env(), **server.env()}, clear=True):
            yield Secured(server, root / "certs", port)
    finally:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        server.kill()


def test_a_job_runs_to_the_right_result_on_tls_workers_with_a_token(secured: Secured) -> None:
    listed = secured.server.get("/api/v1/services/shoal-workers/instances").json()
    assert listed["instances"][0]["metadata"]["tls"] == "1"
    with secured.executor(token=WORKER_TOKEN, tls=secured.driver_tls()) as ex:
        assert set(ex.workers()) == {"w1"}
        outcome = Job("squares", tasks.square, list(range(200)), combine=operator.add).run(ex)
    assert outcome.result == sum(x * x for x in range(200))
    # Without tls=, the client's SHOAL_TLS_* files are used for a worker that speaks TLS.
    with secured.executor(token=WORKER_TOKEN) as ex:
        assert Job("few", tasks.square, [1, 2, 3]).run(ex).result == [1, 4, 9]


def test_a_wrong_token_is_a_clear_error_not_a_hang(secured: Secured) -> None:
    started = time.monotonic()
    with pytest.raises(ExecutorError, match="refused the driver's token"):
        secured.executor(token="not-" + WORKER_TOKEN, tls=secured.driver_tls())
    assert time.monotonic() - started < STARTUP / 2  # it did not wait for the deadline
    # Without token= the driver presents SHOAL_TOKEN (here the ACL token, not the
    # workers' secret): refused just as clearly.
    with pytest.raises(ExecutorError, match="refused the driver's token"):
        secured.executor(tls=secured.driver_tls())


def test_a_driver_without_a_certificate_is_told_why(secured: Secured) -> None:
    with pytest.raises(ExecutorError, match=r"(?i)certificate"):
        secured.executor(token=WORKER_TOKEN, tls=secured.driver_tls(False), wait_for_workers=5)


def _tls_socket(secured: Secured) -> ssl.SSLSocket:
    context = secured.driver_tls().client_context()
    raw = socket.create_connection(("127.0.0.1", secured.port), timeout=8)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _answer(sock: socket.socket, *frames: bytes) -> bytes:
    """What the worker sends back after `frames`, until it closes (or 8 s pass)."""
    for data in frames:
        sock.sendall(data)
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError, ssl.SSLError):
        while chunk := sock.recv(4096):
            received += chunk
    return received


def _kinds(data: bytes) -> list[int]:
    kinds, offset = [], 0
    while len(data) - offset >= HEADER.size:
        size, kind, _, _ = HEADER.unpack_from(data, offset)
        kinds.append(kind)
        offset += HEADER.size + size
    return kinds


def test_no_job_data_is_taken_before_the_driver_is_authenticated(secured: Secured) -> None:
    run = frame(RUN, 0, 1, b"\x80\x04 pickled job data the worker must never relay")
    # Clear text on the TLS port: the handshake fails, nothing is relayed or answered.
    with socket.create_connection(("127.0.0.1", secured.port), timeout=8) as plain:
        assert HELLO not in _kinds(_answer(plain, frame(AUTH, 0, 0, WORKER_TOKEN.encode()), run))
    # TLS with a good certificate but job data first, or a wrong token: REFUSED, closed.
    for first in (run, frame(AUTH, 0, 0, b"wrong")):
        with _tls_socket(secured) as sock:
            answer = _answer(sock, first, run)
        assert _kinds(answer) == [REFUSED]
        assert "refused" in json.loads(answer[HEADER.size :])["reason"]
    # The right token over TLS: the worker's HELLO.
    with _tls_socket(secured) as sock:
        sock.sendall(frame(AUTH, 0, 0, WORKER_TOKEN.encode()))
        header = sock.recv(HEADER.size)
    assert HEADER.unpack(header)[1] == HELLO


def test_a_worker_refuses_to_start_with_half_its_tls_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shoal.cli.main", "worker", "--server", "http://127.0.0.1:1",
         "--tls-cert", str(tmp_path / "x.pem")],
        capture_output=True, text=True, timeout=60, env=_clean_env(),
    )  # fmt: skip
    assert done.returncode != 0
    assert "--tls-key" in done.stderr and "--tls-ca" in done.stderr
