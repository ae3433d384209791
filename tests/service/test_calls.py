"""Calls between services over real processes: balancing, failures, slow and broken replicas.

Every replica is a real uvicorn process registered through `shoal.Service`; the client is
the SDK's `ServiceClient`, balancing over its watched view of the registry.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import httpx

from shoal.client import ControlPlane
from shoal.resilience import BreakerConfig
from shoal.service import ClientPolicy, ServiceClient
from shoal.testing import AppProcess, ServerProcess, wait_for

from .conftest import ReplicaFactory


def client(server: ServerProcess, service: str = "replicas", **policy: object) -> ServiceClient:
    return ServiceClient(
        service, endpoints=server.url, policy=ClientPolicy(zone_aware=False, **policy)
    )


def wait_pool(c: ServiceClient, size: int) -> None:
    wait_for(lambda: len(c.instances()) == size, 20, what=f"{size} instances in the pool")


def served_by(c: ServiceClient, n: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        response = c.get("/work")
        assert response.status_code == 200, response.text
        counts[response.json()["instance"]] += 1
    return counts


def instance_of(app: AppProcess) -> Callable[[], str]:
    return lambda: str(httpx.get(app.url + "/work", timeout=5).json()["instance"])


def test_requests_spread_over_replicas_in_the_proportion_the_balancer_promises(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    apps = replicas(3, weights=[1, 2, 3])
    ids = [instance_of(a)() for a in apps]
    with client(server, balancer="weighted_round_robin") as weighted:
        wait_pool(weighted, 3)
        counts = served_by(weighted, 600)
    # Smooth weighted round robin is exact: every window of 6 picks is 1, 2, 3.
    assert [counts[i] for i in ids] == [100, 200, 300], counts
    with client(server, balancer="round_robin") as even:
        wait_pool(even, 3)
        counts = served_by(even, 300)
    assert sorted(counts.values()) == [100, 100, 100], counts


def test_sigkill_of_a_replica_mid_stream_fails_no_request_and_it_leaves_the_pool(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    apps = replicas(3)
    victim = apps[0]
    victim_id = instance_of(victim)()
    failures: list[str] = []
    done = threading.Event()
    served: collections.Counter[str] = collections.Counter()
    with client(server) as c:
        wait_pool(c, 3)

        def load() -> None:
            while not done.is_set():
                try:
                    response = c.get("/work")
                    if response.status_code != 200:
                        failures.append(f"status {response.status_code}")
                    else:
                        served[response.json()["instance"]] += 1
                except Exception as error:
                    failures.append(repr(error))

        # Four callers: under load peak EWMA may put all four on the victim at the kill,
        # and each reset needs a retry -- within the budget's floor (10, docs/resilience.md).
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: served[victim_id] > 20, 20, what="traffic on the victim")
        victim.kill()
        killed_at = time.monotonic()
        wait_for(lambda: victim_id not in {i["id"] for i in c.instances()}, 10, what="removal")
        left_after = time.monotonic() - killed_at
        before = sum(served.values())
        wait_for(lambda: sum(served.values()) > before + 100, 20, what="traffic afterwards")
        done.set()
        for t in threads:
            t.join(10)
    assert failures == [], failures[:5]
    assert left_after < 5, left_after  # the keep-alive stream closed: gone at once
    assert len(served) == 3


def test_peak_ewma_moves_traffic_away_from_a_slow_replica(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    apps = replicas(3)
    slow = apps[0]
    slow_id = instance_of(slow)()
    httpx.post(slow.url + "/admin/mode", json={"mode": "slow", "delay": 0.25}, timeout=5)
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    with client(server, balancer="peak_ewma") as c:
        wait_pool(c, 3)

        def worker() -> None:
            for _ in range(60):
                instance = c.get("/work").json()["instance"]
                with lock:
                    counts[instance] += 1

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    share = counts[slow_id] / sum(counts.values())
    # Round robin would give it a third; peak EWMA learns within a few requests.
    assert share < 0.1, counts


def test_breaker_opens_on_a_failing_replica_and_closes_after_it_recovers(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    apps = replicas(2)
    bad = apps[0]
    bad_id = instance_of(bad)()
    breaker = BreakerConfig(window=10, minimum_calls=5, open_duration=1.0, half_open_calls=2)
    with client(server, balancer="round_robin", breaker=breaker, outlier=None) as c:
        wait_pool(c, 2)
        httpx.post(bad.url + "/admin/mode", json={"mode": "fail"}, timeout=5)

        def state() -> str | None:
            return next(i["breaker"] for i in c.instances() if i["id"] == bad_id)  # type: ignore[return-value]

        def opened() -> bool:
            c.get("/work")
            return state() == "open"

        wait_for(opened, 20, interval=0, what="the breaker to open")
        # Open: every call goes to the good replica.
        assert {r.json()["instance"] for r in (c.get("/work") for _ in range(20))} != {bad_id}
        assert all(c.get("/work").status_code == 200 for _ in range(20))

        httpx.post(bad.url + "/admin/mode", json={"mode": "ok"}, timeout=5)

        def closed() -> bool:
            c.get("/work")
            return state() == "closed"

        wait_for(closed, 20, interval=0.05, what="the breaker to close again")
        counts = served_by(c, 40)
    assert counts[bad_id] >= 15, counts  # back in the rotation


def test_calls_keep_flowing_on_the_last_view_while_the_control_plane_is_down(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    replicas(2)
    with client(server) as c:
        wait_pool(c, 2)
        server.kill()
        assert all(c.get("/work").status_code == 200 for _ in range(50))
        assert len(c.instances()) == 2


def test_a_client_policy_in_the_config_center_is_hot_reloaded(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    from shoal.service import NoInstance

    replicas(2)
    with ControlPlane(server.url) as cp:
        cp.config.publish("ops/replicas-client", "balancer: round_robin\n", "yaml")
        c = ServiceClient("replicas", endpoints=server.url, policy_item="ops/replicas-client")
        with c:
            wait_pool(c, 2)
            assert c.get("/work").status_code == 200
            cp.config.publish("ops/replicas-client", "tags: [canary]\n", "yaml")

            def refused() -> bool:
                try:
                    c.get("/work")
                except NoInstance:
                    return True
                return False

            wait_for(refused, 20, what="the policy with a tag nobody has")
            cp.config.publish("ops/replicas-client", "max_attempts: lots\n", "yaml")
            time.sleep(0.5)
            assert refused()  # a bad policy is refused; the last good one stays
            cp.config.publish("ops/replicas-client", "balancer: random\n", "yaml")
            wait_for(lambda: not refused(), 20, what="the policy back")


def test_on_config_calls_back_with_every_new_content(server: ServerProcess) -> None:
    from shoal.service import Service

    svc = Service("configured", endpoints=server.url, register=False, config_namespace="ops")
    seen: list[object] = []
    svc.on_config("features")(seen.append)
    try:
        with ControlPlane(server.url) as cp:
            cp.config.publish("ops/features", '{"search": false}', "json")
            wait_for(lambda: seen == [{"search": False}], 20, what="the first content")
            cp.config.publish("ops/features", '{"search": true}', "json")
            wait_for(lambda: seen[-1:] == [{"search": True}], 20, what="the change")
    finally:
        svc.stop()


def test_shoal_call_sends_one_request_and_says_which_instance_answered(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    from typer.testing import CliRunner

    from shoal.cli.main import app

    (replica,) = replicas(1)
    instance = instance_of(replica)()
    runner = CliRunner()
    ok = runner.invoke(app, ["call", "replicas", "get", "/work", "--endpoints", server.url])
    assert ok.exit_code == 0, ok.output
    assert f'"instance":"{instance}"' in ok.stdout
    assert f"200 OK from {instance}" in ok.stderr
    posted = runner.invoke(
        app,
        [
            "call",
            "replicas",
            "POST",
            "/admin/mode",
            "-d",
            '{"mode": "ok"}',
            "--endpoints",
            server.url,
        ],
    )
    assert posted.exit_code == 0 and '"mode":"ok"' in posted.stdout
    missing = runner.invoke(app, ["call", "replicas", "GET", "/nope", "--endpoints", server.url])
    assert missing.exit_code == 1 and "404" in missing.stderr
    bad = runner.invoke(
        app, ["call", "replicas", "GET", "/work", "-d", "{oops", "--endpoints", server.url]
    )
    assert bad.exit_code == 2 and "not JSON" in bad.output
    nobody = runner.invoke(app, ["call", "ghosts", "GET", "/", "--endpoints", server.url])
    assert nobody.exit_code == 1 and "no healthy instance" in nobody.stderr
