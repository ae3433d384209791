"""The service registry on a real `shoal server`: the three failure-detection sources
(active HTTP check, keep-alive stream, TTL lease), discovery, watch and errors.

Detection delays are measured with a monotonic clock and printed (run with ``-s``); the
asserted bounds are looser than the goals to allow for a loaded machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.testing import HttpService, ServerProcess, free_port, local_cluster, wait_for

KEEPALIVE_HOLDER = """
import sys, httpx
url = sys.argv[1]
with httpx.stream("GET", url, timeout=None, follow_redirects=True) as r:
    assert r.status_code == 200, r.read()
    for line in r.iter_lines():
        if line.startswith("event: keepalive"):
            print("ready", flush=True)
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        if p.stdout is not None:
            p.stdout.close()


def register(s: ServerProcess, service: str, iid: str, **body: Any) -> dict[str, Any]:
    r = s.request("PUT", f"/api/v1/services/{service}/instances/{iid}", json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def instances(s: ServerProcess, service: str, **params: Any) -> dict[str, Any]:
    r = s.get(f"/api/v1/services/{service}/instances", params=params)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


class Watcher:
    """Reads a service's watch stream in a thread; records (arrival time, event)."""

    def __init__(self, s: ServerProcess, service: str, start_revision: int | None = None) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.connected = threading.Event()
        params = {"start_revision": start_revision} if start_revision else {}
        self._thread = threading.Thread(
            target=self._run,
            args=(s.url + f"/api/v1/services/{service}/watch", params),
            daemon=True,
        )
        self._thread.start()
        assert self.connected.wait(10), "watch did not connect"

    def _run(self, url: str, params: dict[str, Any]) -> None:
        try:
            with httpx.stream("GET", url, params=params, timeout=None) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith(": watching"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        self.events.append((time.monotonic(), json.loads(line[6:])))
        except httpx.HTTPError:
            pass  # the server was stopped at the end of the test

    def first(self, predicate: Any, timeout: float = 5.0) -> tuple[float, dict[str, Any]]:
        def found() -> tuple[float, dict[str, Any]] | None:
            return next(((t, e) for t, e in list(self.events) if predicate(e)), None)

        return wait_for(found, timeout, interval=0.005, what="a watch event")


def test_killed_http_service_turns_critical_within_a_second(server: ServerProcess) -> None:
    service = HttpService()
    port = service.port
    check = {"type": "http", "path": "/healthz", "interval": "250ms", "timeout": "200ms", "fall": 2}
    register(server, "web", "w1", address="127.0.0.1", port=port, check=check)
    healthy = instances(server, "web", healthy="true")
    assert [i["id"] for i in healthy["instances"]] == ["w1"]
    watcher = Watcher(server, "web", start_revision=healthy["revision"] + 1)

    killed = time.monotonic()
    service.stop()

    def gone() -> float | None:
        body = instances(server, "web", healthy="true")
        return time.monotonic() if not body["instances"] else None

    left_discovery = wait_for(gone, 5, interval=0.01, what="w1 to leave healthy discovery")
    told, event = watcher.first(
        lambda e: e["type"] == "put" and e["instance"]["health"]["status"] == "critical"
    )
    discovery_delay, watch_delay = left_discovery - killed, told - killed
    print(f"\nHTTP check: healthy discovery {discovery_delay:.3f}s, watcher {watch_delay:.3f}s")
    assert discovery_delay < 1.5 and watch_delay < 1.5
    assert "GET /healthz" in event["instance"]["health"]["reason"]
    everyone = instances(server, "web")
    assert everyone["instances"][0]["health"]["status"] == "critical"

    # It comes back: rise=1 makes it passing on the first good probe.
    with service:
        service.start()
        wait_for(lambda: instances(server, "web", healthy="true")["instances"], 5, what="recovery")


def test_sigkilled_keepalive_stream_takes_its_instances_at_once(
    server: ServerProcess, children: list[subprocess.Popen[bytes]]
) -> None:
    lease = server.request("POST", "/api/v1/leases", json={"ttl": 30}).json()["id"]
    for i in range(3):
        register(server, "api", f"a{i}", address="127.0.0.1", port=9000 + i, lease=lease)
    register(server, "api", "other", address="127.0.0.1", port=9100)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KEEPALIVE_HOLDER,
            f"{server.url}/api/v1/leases/{lease}/keepalive-stream",
        ],
        stdout=subprocess.PIPE,
    )
    children.append(holder)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
    assert instances(server, "api")["total"] == 4

    killed = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)

    def gone() -> float | None:
        body = instances(server, "api", consistency="stale")
        return time.monotonic() if body["total"] == 1 else None

    delay = wait_for(gone, 5, interval=0.005, what="the stream's instances to go") - killed
    print(f"\nkeep-alive stream SIGKILL -> instances gone: {delay * 1000:.0f} ms")
    assert delay < 1.0
    assert [i["id"] for i in instances(server, "api")["instances"]] == ["other"]
    assert server.get(f"/api/v1/leases/{lease}").status_code == 404


def test_keepalive_stream_keeps_a_short_lease_alive(server: ServerProcess) -> None:
    lease = server.request("POST", "/api/v1/leases", json={"ttl": 1}).json()["id"]
    register(server, "api", "k", address="127.0.0.1", port=1, lease=lease)
    url = f"{server.url}/api/v1/leases/{lease}/keepalive-stream"
    frames = 0
    with httpx.stream("GET", url, timeout=5) as r:
        for line in r.iter_lines():
            frames += line.startswith("event: keepalive")
            if frames == 8:  # ~2.3 s at ttl/3: well past the 1 s TTL
                break
    assert instances(server, "api")["total"] in (0, 1)  # closing revokes: maybe gone now
    wait_for(lambda: instances(server, "api")["total"] == 0, 2, what="revoke on close")


def test_ttl_instance_expires_after_its_ttl_unless_heartbeated(server: ServerProcess) -> None:
    out = register(
        server, "cron", "c1", address="127.0.0.1", port=1, check={"type": "ttl", "ttl": "1s"}
    )
    assert out["lease"]
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # heartbeats keep it past its TTL
        r = server.request("PUT", "/api/v1/services/cron/instances/c1/heartbeat")
        assert r.status_code == 200 and r.json()["ttl"] == 1, r.text
        last = time.monotonic()
        time.sleep(0.3)
    assert instances(server, "cron")["total"] == 1

    def gone() -> float | None:
        return time.monotonic() if instances(server, "cron")["total"] == 0 else None

    expired = wait_for(gone, 5, interval=0.01, what="the TTL instance to expire") - last
    print(f"\nTTL 1s instance expired {expired:.3f}s after its last heartbeat")
    assert 0.9 <= expired < 2.0
    r = server.request("PUT", "/api/v1/services/cron/instances/c1/heartbeat")
    assert r.status_code == 404 and r.json()["error"] == "instance_not_found"


def test_critical_instance_is_deregistered_after_deregister_after(server: ServerProcess) -> None:
    check = {"type": "tcp", "interval": "100ms", "timeout": "100ms", "fall": 1}
    register(
        server,
        "db",
        "d1",
        address="127.0.0.1",
        port=free_port(),
        check=check,
        deregister_after="300ms",
    )
    wait_for(lambda: instances(server, "db")["total"] == 0, 5, what="deregistration")


def test_discovery_filters_protect_threshold_services_and_watch(server: ServerProcess) -> None:
    start = server.get("/api/v1/cluster").json()["revision"] + 1
    register(
        server,
        "shop",
        "a",
        address="10.0.0.1",
        port=1,
        tags=["v2"],
        zone="eu",
        metadata={"env": "prod"},
    )
    register(server, "shop", "b", address="10.0.0.2", port=1, zone="us", status="critical")
    register(server, "shop", "c", address="10.0.0.3", port=1, zone="eu", status="critical")
    register(server, "cart", "x", address="10.0.0.9", port=1)

    def ids(**params: Any) -> list[str]:
        return [i["id"] for i in instances(server, "shop", **params)["instances"]]

    assert ids() == ["a", "b", "c"]
    assert ids(healthy="true") == ["a"]
    assert ids(zone="eu") == ["a", "c"]
    assert ids(tag="v2") == ids(**{"meta.env": "prod"}) == ["a"]
    r = server.request("PUT", "/api/v1/services/shop/settings", json={"protect_threshold": 0.5})
    assert r.status_code == 200, r.text
    protected = instances(server, "shop", healthy="true")
    assert protected["protected"] is True and len(protected["instances"]) == 3
    assert instances(server, "shop", healthy="true", zone="us")["protected"] is True
    listing = server.get("/api/v1/services").json()
    assert listing["services"] == [
        {"name": "cart", "instances": 1, "healthy": 1},
        {"name": "shop", "instances": 3, "healthy": 1},
    ]
    r = server.request("DELETE", "/api/v1/services/shop/instances/b")
    assert r.status_code == 200
    watcher = Watcher(server, "shop", start_revision=start)
    _, last = watcher.first(lambda e: e["type"] == "delete")
    kinds = [(e["type"], e["id"]) for _, e in watcher.events]
    assert kinds == [("put", "a"), ("put", "b"), ("put", "c"), ("delete", "b")]
    revisions = [e["revision"] for _, e in watcher.events]
    assert revisions == sorted(revisions) and last["service"] == "shop"


BAD = [
    ("PUT", "/api/v1/services/web/instances/a", b"{not json", 400, "invalid_request"),
    ("PUT", "/api/v1/services/web/instances/a", b'{"port": 1}', 400, "invalid_request"),
    (
        "PUT",
        "/api/v1/services/web/instances/a",
        b'{"address": "h", "port": 0}',
        400,
        "invalid_request",
    ),
    (
        "PUT",
        "/api/v1/services/web/instances/a",
        b'{"address": "h", "port": 1, "colour": 1}',
        400,
        "invalid_request",
    ),
    (
        "PUT",
        "/api/v1/services/web/instances/a",
        b'{"address": "h", "port": 1, "check": {"type": "http", "interval": "soon"}}',
        400,
        "invalid_request",
    ),
    (
        "PUT",
        "/api/v1/services/web/instances/a",
        b'{"address": "h", "port": 1, "check": {"type": "gopher"}}',
        400,
        "invalid_request",
    ),
    (
        "PUT",
        "/api/v1/services/web/instances/a",
        b'{"address": "h", "port": 1, "lease": 77}',
        404,
        "lease_not_found",
    ),
    (
        "PUT",
        "/api/v1/services/w%20b/instances/a",
        b'{"address": "h", "port": 1}',
        400,
        "invalid_request",
    ),
    ("PUT", "/api/v1/services/web/instances/nobody/heartbeat", b"", 404, "instance_not_found"),
    ("DELETE", "/api/v1/services/web/instances/nobody", b"", 404, "instance_not_found"),
    ("GET", "/api/v1/services/web/instances?healthy=perhaps", b"", 400, "invalid_request"),
    ("GET", "/api/v1/services/web/instances?colour=red", b"", 400, "invalid_request"),
    ("GET", "/api/v1/services/web/watch?start_revision=0", b"", 400, "invalid_request"),
    ("PUT", "/api/v1/services/web/settings", b'{"protect_threshold": 2}', 400, "invalid_request"),
    ("GET", "/api/v1/leases/77/keepalive-stream", b"", 404, "lease_not_found"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD)
def test_bad_requests_get_json_errors(
    server: ServerProcess, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    r = server.request(method, path, content=body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]
    assert server.get("/api/v1/services/web/instances").json()["total"] == 0  # nothing half-applied


def test_followers_forward_writes_and_redirect_the_keepalive_stream(tmp_path: Path) -> None:
    with local_cluster(tmp_path, 3) as cluster:
        leader = cluster.leader()
        follower = next(p for p in cluster.live() if p is not leader)
        wait_for(lambda: leader.get("/api/v1/cluster").json()["members"][0]["client_url"], 10)
        register(
            follower, "web", "f1", address="127.0.0.1", port=1, check={"type": "ttl", "ttl": "5s"}
        )
        assert instances(leader, "web")["total"] == 1
        r = follower.request("PUT", "/api/v1/services/web/instances/f1/heartbeat")
        assert r.status_code == 200, r.text
        lease = r.json()["lease"]

        def redirected() -> httpx.Response | None:
            resp = follower.get(f"/api/v1/leases/{lease}/keepalive-stream?revoke_on_close=true")
            return resp if resp.status_code == 307 else None

        resp = wait_for(redirected, 10, what="a 307 from the follower")
        assert resp.headers["location"] == (
            f"{leader.url}/api/v1/leases/{lease}/keepalive-stream?revoke_on_close=true"
        )


CLI_APP = """
import sys, typer
from shoal.cli import registry
app = typer.Typer()
app.command("services")(registry.services)
app.add_typer(registry.app, name="service")
app(sys.argv[1:])
"""


def test_cli_register_show_services_watch_deregister(
    server: ServerProcess, children: list[subprocess.Popen[bytes]]
) -> None:
    import typer
    from typer.testing import CliRunner

    from shoal.cli import registry

    app = typer.Typer()
    app.command("services")(registry.services)
    app.add_typer(registry.app, name="service")
    runner = CliRunner()
    ep = ["--endpoints", f"http://127.0.0.1:{free_port()},{server.url}"]  # first one is dead

    watcher = subprocess.Popen(
        [sys.executable, "-c", CLI_APP, "service", "watch", "web", *ep], stdout=subprocess.PIPE
    )
    children.append(watcher)
    wait_for(lambda: "shoal_watchers 1.0" in server.get("/metrics").text, what="the CLI watch")
    args = ["service", "register", "web", "--id", "w1", "--address", "127.0.0.1", "--port", "8080"]
    result = runner.invoke(app, [*args, "--tag", "v2", "--ttl", "30s", "--json", *ep])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["lease"]
    assert watcher.stdout is not None
    assert b"PUT w1 127.0.0.1:8080 passing" in watcher.stdout.readline()

    result = runner.invoke(app, ["services", *ep])
    assert result.exit_code == 0 and "web" in result.stdout, result.output
    result = runner.invoke(
        app, ["service", "show", "web", "--healthy", "--tag", "v2", "--json", *ep]
    )
    assert [i["id"] for i in json.loads(result.stdout)["instances"]] == ["w1"]
    result = runner.invoke(app, ["service", "show", "web", *ep])
    assert "w1" in result.stdout and "passing" in result.stdout
    bad = runner.invoke(app, [*args[:-1], "0", "--http-check", "/h", "--interval", "soon", *ep])
    assert bad.exit_code != 0
    check = ["--http-check", "/h", "--interval", "soon"]
    bad = runner.invoke(
        app,
        ["service", "register", "web", "--id", "x", "--address", "h", "--port", "1", *check, *ep],
    )
    assert bad.exit_code == 1 and "check.interval" in bad.output
    result = runner.invoke(app, ["service", "deregister", "web", "w1", *ep])
    assert result.exit_code == 0, result.output
    assert b"DELETE w1" in watcher.stdout.readline()
    missing = runner.invoke(app, ["service", "deregister", "web", "w1", *ep])
    assert missing.exit_code == 1 and "no instance" in missing.output


def test_leader_failover_marks_no_healthy_instance_critical_and_expires_no_lease(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    """DESIGN decision 3 and 7: the new leader starts from the stored statuses and gives
    every lease its full TTL plus an election timeout, so a failover is invisible to
    healthy instances."""
    service = HttpService()
    port = service.port
    with service, local_cluster(tmp_path, 3) as cluster:
        leader = cluster.leader()
        check = {"type": "http", "path": "/healthz", "interval": "250ms", "timeout": "200ms"}
        register(leader, "web", "w1", address="127.0.0.1", port=port, check=check)
        register(
            leader, "web", "t1", address="127.0.0.1", port=1, check={"type": "ttl", "ttl": "2s"}
        )
        wait_for(
            lambda: instances(leader, "web", healthy="true")["total"] == 2,
            what="both instances healthy",
        )
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(0.3):
                for member in cluster.live():
                    try:
                        url = "/api/v1/services/web/instances/t1/heartbeat"
                        if member.request("PUT", url, timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        continue

        beating = threading.Thread(target=heartbeat, daemon=True)
        beating.start()
        try:
            leader.kill()
            new = cluster.leader()
            assert new is not leader
            # Checked continuously for longer than the TTL and several check intervals.
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                found = instances(new, "web")
                statuses = {i["id"]: i["health"]["status"] for i in found["instances"]}
                assert statuses == {"w1": "passing", "t1": "passing"}, statuses
        finally:
            stop.set()
            beating.join()
