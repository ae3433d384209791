"""Failures with real processes: an instance SIGKILLed under load, a slow instance that
trips its circuit and comes back, every breaker open, and a gateway that drains."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from shoal.testing import AppProcess, wait_for

from .conftest import GatewayFactory, GatewayProcess, UpstreamFactory, route


def _instance_ids(gateway: GatewayProcess, service: str) -> set[str]:
    return {i["id"] for u in gateway.upstreams() if u["service"] == service for i in u["instances"]}


def _breakers(gateway: GatewayProcess, service: str) -> dict[str, str]:
    return {
        i["id"]: i["breaker"]
        for u in gateway.upstreams()
        if u["service"] == service
        for i in u["instances"]
    }


def _id(app: AppProcess) -> str:
    instance: str = httpx.get(app.url + "/work", timeout=5).json()["instance"]
    return instance


class Load:
    """Threads sending GETs through the gateway until stopped; every outcome kept."""

    def __init__(self, url: str, path: str, threads: int = 4) -> None:
        self.url, self.path = url, path
        self.results: list[tuple[int | str, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(self.path)
                    body = r.json()
                    self.results.append((r.status_code, str(body.get("instance", body))))
                except (httpx.HTTPError, ValueError) as error:
                    self.results.append((type(error).__name__, str(error)))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def count(self) -> int:
        return len(self.results)


def test_sigkill_of_an_instance_under_load_fails_no_idempotent_request(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    apps = upstreams(3)
    # The default budget's floor (10) covers all 4 load threads retrying at once, which a
    # loaded machine makes likely while the victim is still in the pool.
    gw = gateway({"routes": [route("/", policy={"balancer": "round_robin"})]})
    wait_for(lambda: len(_instance_ids(gw, "echo")) == 3, 20, what="3 instances in the pool")
    victim = _id(apps[0])
    with Load(gw.url, "/work") as load:
        wait_for(lambda: load.count() > 200, 20, what="load running")
        apps[0].kill()  # SIGKILL: connections reset, nothing deregistered by the process
        killed_at = load.count()
        wait_for(lambda: victim not in _instance_ids(gw, "echo"), 10, what="victim left")
        wait_for(lambda: load.count() > killed_at + 300, 20, what="load after the kill")
    failed = [r for r in load.results if r[0] != 200]
    assert not failed, failed[:5]
    after = [who for _, who in load.results[killed_at + 100 :]]
    assert victim not in after  # the pool moved on
    assert len(set(after)) == 2


def test_a_slow_instance_trips_its_circuit_and_recovers(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    slow_app, fast_app = upstreams(2)
    policy: dict[str, Any] = {
        "balancer": "round_robin",
        "attempt_timeout": "3s",
        "max_attempts": 1,
        "outlier": False,
        "breaker": {
            "window": 4,
            "minimum_calls": 4,
            "slow_call_rate": 0.5,
            "slow_call_duration": "150ms",
            "open_duration": "1s",
            "half_open_calls": 1,
        },
    }
    gw = gateway({"routes": [route("/", policy=policy)]})
    wait_for(lambda: len(_instance_ids(gw, "echo")) == 2, 20, what="2 instances in the pool")
    slow, fast = _id(slow_app), _id(fast_app)
    httpx.post(slow_app.url + "/admin/mode", json={"mode": "slow", "delay": 0.3}, timeout=5)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        for _ in range(12):  # enough for 4 slow calls on the slow one
            assert client.get("/work").status_code == 200
        assert _breakers(gw, "echo")[slow] == "open"
        started = time.monotonic()
        seen = [client.get("/work").json()["instance"] for _ in range(10)]
        assert set(seen) == {fast}  # the open circuit keeps the slow one out
        assert time.monotonic() - started < 1.5
        httpx.post(slow_app.url + "/admin/mode", json={"mode": "ok"}, timeout=5)

        def back() -> bool:
            return slow in {client.get("/work").json()["instance"] for _ in range(4)}

        wait_for(back, 10, interval=0.2, what="the slow instance back after its circuit")
        assert _breakers(gw, "echo")[slow] == "closed"


def test_every_circuit_open_gets_503_circuit_open(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    (app,) = upstreams(1)
    policy = {
        "max_attempts": 1,
        "outlier": False,
        "breaker": {"window": 4, "minimum_calls": 4, "open_duration": "30s"},
    }
    gw = gateway({"routes": [route("/", policy=policy)]})
    wait_for(lambda: len(_instance_ids(gw, "echo")) == 1, 20, what="the instance in the pool")
    httpx.post(app.url + "/admin/mode", json={"mode": "fail"}, timeout=5)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        statuses = [client.get("/work").status_code for _ in range(4)]
        assert statuses == [500] * 4  # the upstream's own answers, relayed
        r = client.get("/work")
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "circuit_open"
    assert "echo" in r.json()["message"]


def test_sigterm_drains_the_request_in_flight(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    (app,) = upstreams(1)
    gw = gateway({"routes": [route("/")]})
    wait_for(lambda: len(_instance_ids(gw, "echo")) == 1, 20, what="the instance in the pool")
    httpx.post(app.url + "/admin/mode", json={"mode": "slow", "delay": 1.0}, timeout=5)
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(gw.url + "/work", timeout=10).status_code)
        except httpx.HTTPError as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    # The request is in flight once the instance has it (it takes 1 s there): a client
    # connection alone may not have sent its request yet, and an idle one is closed.
    wait_for(
        lambda: any(i["outstanding"] for u in gw.upstreams() for i in u["instances"]),
        5,
        interval=0.01,
        what="the request in flight",
    )
    assert gw.terminate(timeout=10) == 0
    caller.join(10)
    assert outcome == [200]


def test_a_failing_instance_is_retried_for_gets_only(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    bad_app, good_app = upstreams(2)
    policy = {"balancer": "round_robin", "outlier": False, "breaker": False}
    gw = gateway({"routes": [route("/", policy=policy)]})
    wait_for(lambda: len(_instance_ids(gw, "echo")) == 2, 20, what="2 instances in the pool")
    httpx.post(bad_app.url + "/admin/mode", json={"mode": "fail"}, timeout=5)
    good = _id(good_app)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        # 500 is not in the default retry statuses (502, 503, 504): relayed as it is.
        statuses = {client.get("/work").status_code for _ in range(6)}
        assert statuses == {200, 500}
    policy["retry_statuses"] = [500]
    gw.write_routes({"routes": [route("/", policy=policy)]})
    with httpx.Client(base_url=gw.url, timeout=10) as client:

        def retried() -> bool:
            return all(client.get("/work").json()["instance"] == good for _ in range(6))

        wait_for(retried, 10, what="GETs retried on the good instance")
        # A POST is not idempotent: the failing instance's 500 is its answer, never
        # sent again to the other one.
        posts = {client.post("/work").status_code for _ in range(6)}
        assert posts == {200, 500}
    text = gw.metrics()
    assert 'shoal_gateway_retries_total{route="/",upstream="echo"}' in text
