"""End to end: a real `shoal server` process on loopback, driven through the `shoal` CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shoal(*args: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal.cli.main", *args, "--endpoints", endpoint],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # polling interval, not a wait for a condition
    raise AssertionError(f"{url}/readyz not ready in time")


def test_server_and_cli_end_to_end(tmp_path: Path) -> None:
    client_port, peer_port = free_port(), free_port()
    url = f"http://127.0.0.1:{client_port}"
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoal.cli.main",
            "server",
            "--name",
            "n1",
            "--data-dir",
            str(tmp_path / "data"),
            "--client-addr",
            f"127.0.0.1:{client_port}",
            "--peer-addr",
            f"127.0.0.1:{peer_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        try:
            wait_ready(url, process, time.monotonic() + 20)
        except AssertionError:
            log.flush()
            raise AssertionError((tmp_path / "server.log").read_text()) from None

        put = shoal("kv", "put", "a", "1", endpoint=url)
        assert put.returncode == 0, put.stderr
        assert "revision" in put.stdout

        got = shoal("kv", "get", "a", "--json", endpoint=url)
        assert got.returncode == 0, got.stderr
        kv = json.loads(got.stdout)
        assert kv["key"] == "a" and kv["value"] == "1" and kv["version"] == 1

        listed = shoal("kv", "list", "a", endpoint=url)
        assert listed.returncode == 0, listed.stderr
        assert "a" in listed.stdout and "1 key(s)" in listed.stdout
        # The control plane's own records live in the same key space, under /_shoal/.
        internal = shoal("kv", "list", "/_shoal/members/", endpoint=url)
        assert "/_shoal/members/n1" in internal.stdout

        granted = shoal("lease", "grant", "5", endpoint=url)
        assert granted.returncode == 0, granted.stderr
        assert "granted with TTL 5s" in granted.stdout

        status = shoal("cluster", "status", "--json", endpoint=url)
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["leader"] == "n1"
        assert [m["name"] for m in info["members"]] == ["n1"]

        missing = shoal("kv", "get", "nope", endpoint=url)
        assert missing.returncode == 1 and "not found" in missing.stderr

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
