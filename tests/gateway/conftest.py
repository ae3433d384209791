"""Fixtures for the gateway's tests: a real control plane, real upstream processes (the
FastAPI app in apps/upstream.py, registered through the SDK) and a real gateway process
(`python -m shoal.gateway`), all on loopback ports of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shoal.testing import AppProcess, ServerProcess, free_port, uvicorn_command, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess("n1", tmp_path / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


UpstreamFactory = Callable[..., list[AppProcess]]


@pytest.fixture
def upstreams(server: ServerProcess, tmp_path: Path) -> Iterator[UpstreamFactory]:
    """`upstreams(n, service="echo")`: n instances of apps/upstream.py, healthy."""
    started: list[AppProcess] = []

    def start(n: int, service: str = "echo") -> list[AppProcess]:
        batch = [
            AppProcess(
                uvicorn_command("tests.gateway.apps.upstream:app", "--no-access-log"),
                endpoints=server.url,
                env={"UPSTREAM_SERVICE": service},
                log=tmp_path / f"{service}-{len(started) + i}.log",
                cwd=REPO,
            )
            for i in range(n)
        ]
        started.extend(batch)
        for app in batch:
            app.wait_healthy()
        return batch

    try:
        yield start
    finally:
        for app in started:
            app.kill()


class GatewayProcess:
    """`python -m shoal.gateway` on a port of its own, with an admin port."""

    def __init__(
        self,
        tmp: Path,
        endpoints: str,
        routes: dict[str, Any] | None = None,
        *,
        routes_item: str | None = None,
        workers: int = 1,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port, self.admin_port = free_port(), free_port()
        if workers > 1:  # worker i's admin port is admin_port + i
            for _ in range(workers - 1):
                free_port()
        self.routes_file = tmp / f"routes-{self.port}.yaml"
        self.access_log = tmp / f"access-{self.port}.log"
        self.log_path = tmp / f"gateway-{self.port}.log"
        cmd = [
            sys.executable, "-m", "shoal.gateway",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--admin-port", str(self.admin_port),
            "--endpoints", endpoints,
            "--access-log", str(self.access_log),
            "--workers", str(workers),
            "--drain-timeout", "5",
            *extra,
        ]  # fmt: skip
        if routes is not None:
            self.write_routes(routes)
            cmd += ["--routes", str(self.routes_file)]
        if routes_item is not None:
            cmd += ["--routes-item", routes_item]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def write_routes(self, routes: dict[str, Any]) -> None:
        # Write then rename, so the gateway's poll never reads half a file.
        tmp = self.routes_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(routes))
        os.replace(tmp, self.routes_file)

    def wait_ready(self, timeout: float = 20.0, admin_port: int | None = None) -> GatewayProcess:
        url = f"http://127.0.0.1:{admin_port or self.admin_port}/healthz"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log()}")
            return httpx.get(url, timeout=1).status_code == 200

        wait_for(ready, timeout, what="gateway /healthz")
        return self

    def upstreams(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(self.admin + "/upstreams", timeout=5).json()
        return data

    def metrics(self) -> str:
        return httpx.get(self.admin + "/metrics", timeout=5).text

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateway(server: ServerProcess, tmp_path: Path) -> Iterator[GatewayFactory]:
    """`gateway(routes)` -> a ready gateway process in front of `server`'s registry."""
    started: list[GatewayProcess] = []

    def start(routes: dict[str, Any] | None = None, **kw: Any) -> GatewayProcess:
        proc = GatewayProcess(tmp_path, server.url, routes, **kw)
        started.append(proc)
        return proc.wait_ready()

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()


def route(prefix: str, service: str = "echo", **kw: Any) -> dict[str, Any]:
    return {"prefix": prefix, "service": service, **kw}
