"""Fixtures shared by the integration tests: a real one-member `shoal server`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.testing import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A running single-member control plane on random loopback ports, killed afterwards."""
    proc = ServerProcess("n1", tmp_path / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()
