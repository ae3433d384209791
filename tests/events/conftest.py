"""Real servers for the events tests: a shoal control plane (1 or 3 members) and a
redis-server started by the test on a loopback port, both killed by PID.

redis-server comes from Debian's package; when it is missing it is installed with
apt-get here (CI runs as root), and only if that is impossible are the Redis tests
skipped, with the reason printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shoal.testing import LocalCluster, ServerProcess, free_port, wait_for


def _ensure_redis() -> str | None:
    """The path of redis-server, installing Debian's package if need be; None if impossible."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server"], check=True, timeout=600, env=env
        )
    return shutil.which("redis-server")


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


@pytest.fixture
def shoal_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess("n1", tmp_path / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


@pytest.fixture(params=["shoal", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    """A URL of each backend in turn: a one-member control plane, then a redis-server."""
    if request.param == "shoal":
        server: ServerProcess = request.getfixturevalue("shoal_server")
        return server.url
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    return redis_server.url


@pytest.fixture
def three_members(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", 3)
    try:
        cluster.start()
        cluster.leader()
        yield cluster
    finally:
        cluster.stop()
