"""Prometheus metrics of every kind of process shoal runs, scraped from real processes:
a member, a `shoal worker`, an SDK service. Checks the names (one scheme: `shoal_`
prefix, `_total` counters, units in names) and that the counters move.
"""

from __future__ import annotations

import contextlib
import operator
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from examples.compute.sum import partial_sum
from shoal.compute import Job, ranges
from shoal.compute.shoal_executor import ShoalExecutor
from shoal.testing import AppProcess, ServerProcess, free_port, uvicorn_command, wait_for

REPO = Path(__file__).resolve().parents[2]
STARTUP = 90.0  # a worker or a service may take this long to start on a busy machine
UNITS = ("_seconds", "_bytes", "_entries")  # a histogram's name says what it measures


def scrape(url: str) -> dict[str, Metric]:
    text = httpx.get(url, timeout=5).text
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The sum of the samples `name` with these labels (0 when there are none)."""
    total = 0.0
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def check_scheme(families: dict[str, Metric], prefix: str) -> None:
    """shoal's families start with `prefix`; counters are `_total`; histograms name a unit."""
    ours = {n: f for n, f in families.items() if n.startswith("shoal_")}
    assert ours, "no shoal_ metrics at all"
    for name, family in ours.items():
        assert name.startswith(prefix), f"{name} does not start with {prefix}"
        assert name == name.lower() and " " not in name
        if family.type == "counter":
            assert any(s.name == f"{name}_total" for s in family.samples) or not family.samples
        if family.type == "histogram":
            assert name.endswith(UNITS), f"histogram {name} names no unit"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess("n1", tmp_path / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def test_a_member_exposes_raft_leases_watchers_and_requests_and_they_move(
    server: ServerProcess,
) -> None:
    url = server.url + "/metrics"
    before = scrape(url)
    check_scheme(before, "shoal_")
    for name in (
        "shoal_raft_term", "shoal_raft_is_leader", "shoal_raft_commit_index",
        "shoal_raft_applied_index", "shoal_raft_commit_lag_entries", "shoal_raft_last_index",
        "shoal_raft_leader_changes", "shoal_wal_persist_seconds", "shoal_proposals",
        "shoal_http_requests", "shoal_http_request_duration_seconds", "shoal_leases",
        "shoal_watchers", "shoal_kv_revision",
    ):  # fmt: skip
        assert name in before, name
    assert value(before, "shoal_raft_leader_changes_total") >= 1  # it became leader
    lease = server.request("POST", "/api/v1/leases", json={"ttl": 30}).json()["id"]
    for i in range(5):
        server.request("PUT", f"/api/v1/kv/m{i}", json={"value": "x", "lease": lease})
    with httpx.stream("GET", f"{server.url}/api/v1/watch?prefix=/", timeout=10) as stream:
        wait_for(lambda: value(scrape(url), "shoal_watchers") == 1, 20, what="the watcher")
        stream.close()
    after = scrape(url)
    assert value(after, "shoal_proposals_total") >= value(before, "shoal_proposals_total") + 6
    kv_puts = {"route": "/api/v1/kv", "status": "200"}
    assert value(after, "shoal_http_requests_total", **kv_puts) >= 5
    assert value(after, "shoal_http_request_duration_seconds_count", route="/api/v1/kv") >= 5
    assert value(after, "shoal_wal_persist_seconds_count") > value(
        before, "shoal_wal_persist_seconds_count"
    )
    assert value(after, "shoal_leases") == 1
    assert value(after, "shoal_kv_revision") >= value(before, "shoal_kv_revision") + 5
    assert value(after, "shoal_raft_applied_index") > value(before, "shoal_raft_applied_index")


def test_a_worker_exposes_its_relaying_and_the_counters_move(
    server: ServerProcess, tmp_path: Path
) -> None:
    port = free_port()
    log = (tmp_path / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "shoal.cli.main", "worker", "--server", server.url, "--id", "w1",
         "--slots", "2", "--metrics-port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    log.close()
    try:
        registered = f"{server.url}/api/v1/services/shoal-workers/instances"

        def metadata() -> dict[str, str] | None:
            found = httpx.get(registered, timeout=5).json().get("instances") or []
            return found[0]["metadata"] if found else None

        meta = wait_for(metadata, STARTUP, 0.1, "the worker registered")
        assert meta["metrics_port"] == str(port)  # where a scraper finds it
        url = f"http://127.0.0.1:{port}/metrics"
        before = scrape(url)
        check_scheme(before, "shoal_worker_")
        assert value(before, "shoal_worker_run_batches_total") == 0
        job = Job("sum", partial_sum, ranges(0, 10**5, 8), combine=operator.add)
        with ShoalExecutor(server.url, min_workers=1, wait_for_workers=STARTUP) as ex:
            assert job.run(ex).result == sum(range(10**5))
            during = scrape(url)
            assert value(during, "shoal_worker_drivers") == 1
            assert value(during, "shoal_worker_slot_processes") == 2

        def driver_gone() -> dict[str, Metric] | None:
            families = scrape(url)
            return families if value(families, "shoal_worker_drivers") == 0 else None

        after = wait_for(driver_gone, 20, what="the driver gone")
        assert value(after, "shoal_worker_run_batches_total") >= 1
        assert value(after, "shoal_worker_result_batches_total") >= 1
        assert value(after, "shoal_worker_result_bytes_total") > 0
        assert value(after, "shoal_worker_slot_processes") == 0
    finally:
        with contextlib.suppress(OSError):
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)


def test_an_sdk_service_exposes_requests_and_calls_and_they_move(
    server: ServerProcess, tmp_path: Path
) -> None:
    app = AppProcess(
        uvicorn_command("tests.service.apps.fastapi_plain:app", "--no-access-log"),
        endpoints=server.url,
        log=tmp_path / "app.log",
        cwd=REPO,
    )
    try:
        app.wait_healthy()
        url = app.url + "/metrics"
        before = scrape(url)
        check_scheme(before, "shoal_")
        assert all(
            n.startswith(("shoal_service_", "shoal_client_"))
            for n in before
            if n.startswith("shoal_")
        )
        for _ in range(3):
            assert httpx.get(app.url + "/whoami", timeout=5).status_code == 200
        after = scrape(url)
        labels = {"service": "plain-fastapi", "route": "/whoami", "status": "200"}
        assert (
            value(after, "shoal_service_requests_total", **labels)
            == value(before, "shoal_service_requests_total", **labels) + 3
        )
        assert value(after, "shoal_service_request_duration_seconds_count", route="/whoami") >= 3
    finally:
        app.kill()
