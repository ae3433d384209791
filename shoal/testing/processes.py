"""Real `shoal server` processes on loopback for tests: start, wait, kill -9, restart.

Every process is tracked by PID and killed on exit, even when a test fails half-way.
Ports come from the kernel (bind to port 0), so parallel test runs do not collide.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


_handed_out: set[int] = set()
_ports = random.Random()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port nobody listens on, never the same one twice in this process.

    Chosen below the kernel's ephemeral range: a port from bind(0) is one the kernel also
    hands out as the local port of outgoing connections, so between this call and the
    server's own bind, any process making connections could take it (seen as "address
    already in use" on a loaded machine). Below the range only another picker like this
    one could, and it checks that the port is free too.
    """
    low, _ = _ephemeral_range()
    top = max(low, 12_000)
    for _ in range(1000):
        port = _ports.randrange(10_000, top)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found below the ephemeral range")


def wait_for(
    condition: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (httpx.HTTPError, OSError, KeyError, ValueError) as error:
            last_error, value = error, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}: {last_error}")


@dataclass
class ServerProcess:
    name: str
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    initial_cluster: str | None = None
    join: str | None = None
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_addr(self) -> str:
        return f"127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "shoal.cli.main", "server",
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--client-addr", f"127.0.0.1:{self.client_port}",
            "--peer-addr", self.peer_addr,
        ]  # fmt: skip
        if self.initial_cluster:
            cmd += ["--initial-cluster", self.initial_cluster]
        if self.join:
            cmd += ["--join", self.join]
        return cmd + self.extra

    def start(self) -> ServerProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200

        wait_for(healthy, timeout, what=f"{self.name} /healthz")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_healthy(timeout)
        wait_for(
            lambda: httpx.get(self.url + "/readyz", timeout=1).status_code == 200,
            timeout,
            what=f"{self.name} /readyz",
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 5), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=kwargs.pop("timeout", 5), **kwargs)


class LocalCluster:
    """N members with an initial cluster, or members added one by one with `join`."""

    def __init__(self, root: Path, size: int, extra: list[str] | None = None) -> None:
        self.root = root
        self.members: dict[str, ServerProcess] = {}
        names = [f"n{i}" for i in range(1, size + 1)]
        procs = [ServerProcess(n, root / n / "data", extra=list(extra or [])) for n in names]
        initial = ",".join(f"{p.name}={p.peer_addr}" for p in procs)
        for p in procs:
            p.initial_cluster = initial
            self.members[p.name] = p

    def start(self) -> LocalCluster:
        for p in self.members.values():
            p.start()
        for p in self.members.values():
            p.wait_healthy()
        return self

    def stop(self) -> None:
        for p in self.members.values():
            with contextlib.suppress(Exception):
                p.kill()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def live(self) -> list[ServerProcess]:
        return [p for p in self.members.values() if p.alive]

    def leader(self, timeout: float = 30.0) -> ServerProcess:
        """The member every live member agrees leads (and that says so itself)."""

        def agreed() -> ServerProcess | None:
            views = {p.get("/api/v1/cluster", timeout=1).json()["leader"] for p in self.live()}
            if len(views) != 1:
                return None
            name = views.pop()
            if name is None or name not in self.members or not self.members[name].alive:
                return None
            status = self.members[name].get("/api/v1/cluster", timeout=1).json()
            return self.members[name] if status["role"] == "leader" else None

        return wait_for(agreed, timeout, what="an agreed leader")

    def endpoints(self) -> list[str]:
        return [p.url for p in self.members.values()]


@contextlib.contextmanager
def local_cluster(root: Path, size: int, extra: list[str] | None = None) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root, size, extra)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
