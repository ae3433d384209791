"""Real servers for the events tests: a shoal control plane (1 or 3 members), a
redis-server and a nats-server (JetStream) started by the test on a loopback port, all
killed by PID.

redis-server and nats-server come from Debian's packages; when one is missing it is
installed with apt-get here (CI runs as root), and only if that is impossible are its
tests skipped, with the reason printed.

nats-server runs with the strictest durability it offers: `sync_interval: always` (fsync
before acknowledging) on 2.10 and later; 2.9 (Debian bookworm) has no such option and
acknowledges once the write reached the operating system (docs/events.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shoal.testing import LocalCluster, ServerProcess, free_port, wait_for


def _which(binary: str) -> str | None:
    # /usr/sbin is where Debian puts nats-server, and not on every user's PATH.
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")


def _ensure(binary: str, package: str) -> str | None:
    """The path of `binary`, installing Debian's `package` if need be; None if impossible."""
    found = _which(binary)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package], check=True, timeout=600, env=env
        )
    return _which(binary)


def _ensure_redis() -> str | None:
    return _ensure("redis-server", "redis-server")


def nats_version(binary: str) -> tuple[int, int]:
    text = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"v(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@dataclass
class NatsServer:
    """One nats-server with JetStream on a file store in `data_dir`, on loopback; fsync
    before acknowledging where the server offers it (2.10+: `sync_interval: always`)."""

    binary: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def syncs_always(self) -> bool:
        return nats_version(self.binary) >= (2, 10)

    def start(self) -> NatsServer:
        import socket

        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        sync = "  sync_interval: always\n" if self.syncs_always else ""
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"jetstream {{\n  store_dir: {json.dumps(str(self.data_dir / 'js'))}\n{sync}}}\n"
        )
        log = (self.data_dir / "nats.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: see {self.data_dir / 'nats.log'}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return sock.recv(4).startswith(b"INFO")

        wait_for(up, 15, what="nats-server to say INFO")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class RedisServer:
    """One redis-server with `appendfsync always` (acknowledged = fsync'd), on loopback."""

    binary: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--protected-mode", "no",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        client = redis.Redis(port=self.port, socket_timeout=1)
        wait_for(lambda: client.ping(), 15, what="redis-server to answer PING")
        client.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = _ensure_redis()
    if binary is None:
        message = "SKIPPED LOUDLY: redis-server is missing and apt-get cannot install it here"
        print(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def nats_binary() -> str:
    binary = _ensure("nats-server", "nats-server")
    if binary is None:
        message = "SKIPPED LOUDLY: nats-server is missing and apt-get cannot install it here"
        print(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def nats_server(nats_binary: str, tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(nats_binary, tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def shoal_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess("n1", tmp_path / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The URL of a fresh server of `backend` ("shoal", "redis" or "nats")."""
    server: ServerProcess | RedisServer | NatsServer = request.getfixturevalue(f"{backend}_server")
    return server.url


@pytest.fixture(params=["shoal", "redis", "nats"])
def url(request: pytest.FixtureRequest) -> str:
    """A URL of each backend in turn: a one-member control plane, a redis-server, a
    nats-server with JetStream."""
    return backend_url(request, request.param)


@pytest.fixture
def three_members(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", 3)
    try:
        cluster.start()
        cluster.leader()
        yield cluster
    finally:
        cluster.stop()
