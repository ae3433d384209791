"""`shoal gateway` itself: it serves a route table, and refuses a bad one at start with
the field's name and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from shoal.testing import ServerProcess, free_port, wait_for

from .conftest import REPO, UpstreamFactory, route


def test_shoal_gateway_serves_a_routes_file(
    server: ServerProcess, upstreams: UpstreamFactory, tmp_path: Path
) -> None:
    upstreams(1)
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({"routes": [route("/api", strip_prefix=True)]}))
    port = free_port()
    cmd = [sys.executable, "-m", "shoal.cli.main", "gateway", "--port", str(port)]
    cmd += ["--host", "127.0.0.1", "--routes", str(routes), "--endpoints", server.url]
    cmd += ["--access-log", "off"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def answered() -> bool:
            r = httpx.get(f"http://127.0.0.1:{port}/api/work", timeout=2)
            return r.status_code == 200 and "instance" in r.json()

        wait_for(answered, 20, what="shoal gateway answering")
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_a_bad_routes_file_stops_the_start_with_the_field(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({"routes": [{"prefix": "/api"}]}))
    cmd = [sys.executable, "-m", "shoal.cli.main", "gateway", "--port", str(free_port())]
    cmd += ["--routes", str(routes), "--endpoints", "http://127.0.0.1:1"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "routes[0].service" in out.stderr
