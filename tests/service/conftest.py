"""Fixtures for the SDK's tests: a real control plane and real service processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shoal.testing import AppProcess, ServerProcess, uvicorn_command

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess("n1", tmp_path / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


ReplicaFactory = Callable[..., list[AppProcess]]


@pytest.fixture
def replicas(server: ServerProcess, tmp_path: Path) -> Iterator[ReplicaFactory]:
    """`replicas(n, service=..., weights=[...])`: n replica processes, healthy."""
    started: list[AppProcess] = []

    def start(
        n: int, service: str = "replicas", weights: list[float] | None = None
    ) -> list[AppProcess]:
        batch = []
        for i in range(n):
            env = {"REPLICA_SERVICE": service, "REPLICA_WEIGHT": str((weights or [1.0] * n)[i])}
            app = AppProcess(
                uvicorn_command("tests.service.apps.replica:app", "--no-access-log"),
                endpoints=server.url,
                env=env,
                log=tmp_path / f"{service}-{len(started) + i}.log",
                cwd=REPO,
            )
            batch.append(app)
        started.extend(batch)
        for app in batch:
            app.wait_registered()
        return batch

    try:
        yield start
    finally:
        for app in started:
            app.kill()
