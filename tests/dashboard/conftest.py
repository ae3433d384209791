"""Fixtures of the dashboard's tests: a real 3-member cluster and headless Chromium.

The browser is Debian's `chromium`, driven by Playwright over its own protocol (never a
browser Playwright downloads). `make test` installs the package when it is missing
(`make debs`); if it still is not there -- not root, no apt -- the browser tests skip
and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.testing import LocalCluster

CHROMIUM = "/usr/bin/chromium"
# Flags that work on a shared, offline machine: no sandbox (root in a container), no GPU,
# nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _chromium() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            capture_output=True, timeout=900, check=False,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
    return CHROMIUM if Path(CHROMIUM).exists() else None


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh Chromium per test. Not shared across tests on purpose: Playwright's sync
    API keeps an event loop running in this thread while it is started, which would
    break every later test in the same process that calls asyncio.run."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    path = _chromium()
    if path is None:
        pytest.skip(f"{CHROMIUM} is missing and could not be installed (make debs, as root)")
    playwright = sync_api.sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), 3)
    try:
        cluster.start()
        cluster.leader()
        yield cluster
    finally:
        cluster.stop()
