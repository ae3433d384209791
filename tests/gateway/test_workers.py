"""`--workers N`: several processes on one port (SO_REUSEPORT), each restarted if it dies."""

from __future__ import annotations

import os
import signal

import httpx

from shoal.testing import wait_for

from .conftest import GatewayFactory, UpstreamFactory, route


def _served(admin_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("shoal_gateway_requests_total{")
    )


def test_two_workers_share_the_port_and_come_back_after_a_kill(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    upstreams(1)
    gw = gateway({"routes": [route("/")]}, workers=2)
    ports = [gw.admin_port, gw.admin_port + 1]
    gw.wait_ready(admin_port=ports[1])

    def spread() -> bool:
        for _ in range(20):  # a new connection each: the kernel picks the worker
            assert httpx.get(gw.url + "/work", headers={"connection": "close"}).status_code == 200
        return all(_served(p) > 0 for p in ports)

    wait_for(spread, 20, interval=0.1, what="both workers serving")
    pids = [httpx.get(f"http://127.0.0.1:{p}/healthz").json()["pid"] for p in ports]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    os.kill(pids[0], signal.SIGKILL)

    def replaced() -> bool:
        pid = httpx.get(f"http://127.0.0.1:{ports[0]}/healthz", timeout=1).json()["pid"]
        return pid != pids[0]

    wait_for(replaced, 20, what="worker 0 restarted")
    assert httpx.get(gw.url + "/work").status_code == 200
    assert gw.terminate(timeout=20) == 0
