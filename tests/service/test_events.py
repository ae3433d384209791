"""`@svc.on_event` and `svc.publish` between real Flask and FastAPI services.

A Flask service publishes orders from a request and audits them with a plain handler; two
FastAPI replicas bill them in one group with a coroutine handler. Every order reaches each
group (the billing replicas share them, none twice), each handler runs under the
publishing request's trace id, and a replica stopped with SIGTERM mid-stream first
finishes what it is handling, hands the rest back, and nothing is lost.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import httpx

from shoal.testing import AppProcess, ServerProcess, uvicorn_command, wait_for

from .conftest import REPO

FLASK_APP = str(REPO / "tests" / "service" / "apps" / "events_flask.py")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def seen(app: AppProcess) -> list[dict[str, str]]:
    answer = httpx.get(app.url + "/seen", timeout=5)
    answer.raise_for_status()
    return list(answer.json())


def billing(server: ServerProcess, tmp_path: Path, name: str, delay: float) -> AppProcess:
    return AppProcess(
        uvicorn_command("tests.service.apps.events_fastapi:app", "--no-access-log"),
        endpoints=server.url,
        env={"HANDLER_DELAY": str(delay), "HANDLED_LOG": str(tmp_path / f"{name}.handled")},
        log=tmp_path / f"{name}.log",
        cwd=REPO,
    )


def test_each_group_gets_every_order_once_under_the_publishers_trace(
    server: ServerProcess, tmp_path: Path
) -> None:
    flask_app = AppProcess(
        [sys.executable, FLASK_APP, "{port}"], endpoints=server.url, log=tmp_path / "flask.log"
    )
    bill_a, bill_b = billing(server, tmp_path, "a", 0), billing(server, tmp_path, "b", 0)
    with flask_app, bill_a, bill_b:
        for app in (flask_app, bill_a, bill_b):
            app.wait_registered()
        parent = f"00-{TRACE}-b7ad6b7169203331-01"
        answer = httpx.post(
            flask_app.url + "/orders",
            params={"n": 40},
            headers={"traceparent": parent},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        offsets = answer.json()["offsets"]
        assert len(set(offsets)) == 40  # each publish acknowledged with its own offset

        ids = {f"o-{i}" for i in range(40)}
        wait_for(lambda: {m["id"] for m in seen(flask_app)} == ids, 30, what="the audit group")
        wait_for(
            lambda: {m["id"] for m in seen(bill_a) + seen(bill_b)} == ids,
            30,
            what="the billing group",
        )
        billed = Counter(m["id"] for m in seen(bill_a) + seen(bill_b))
        assert set(billed.values()) == {1}, "no replica crashed, so no order is billed twice"
        assert seen(bill_a) and seen(bill_b), "the two replicas share the group's partitions"
        traces = {m["trace"] for m in seen(flask_app) + seen(bill_a) + seen(bill_b)}
        assert traces == {TRACE}

        # FastAPI publishes with `await svc.apublish`; its own group sees those too.
        answer = httpx.post(bill_a.url + "/orders", params={"n": 10}, timeout=60)
        assert answer.status_code == 200, answer.text
        more = {f"a-{i}" for i in range(10)}
        wait_for(lambda: more <= {m["id"] for m in seen(flask_app)}, 30, what="audit of apublish")


def test_sigterm_finishes_the_handlers_in_flight_and_hands_the_rest_over(
    server: ServerProcess, tmp_path: Path
) -> None:
    flask_app = AppProcess(
        [sys.executable, FLASK_APP, "{port}"], endpoints=server.url, log=tmp_path / "flask.log"
    )
    # Slow handlers, so that the SIGTERM lands while messages are being handled.
    leaving, staying = billing(server, tmp_path, "a", 0.2), billing(server, tmp_path, "b", 0.2)
    with flask_app, leaving, staying:
        for app in (flask_app, leaving, staying):
            app.wait_registered()
        answer = httpx.post(flask_app.url + "/orders", params={"n": 60}, timeout=60)
        assert answer.status_code == 200, answer.text
        wait_for(lambda: len(seen(leaving)) >= 3, 30, what="the leaving replica at work")
        assert leaving.terminate() == 0

        log = (tmp_path / "a.handled").read_text().splitlines()
        started = {line.split()[1] for line in log if line.startswith("start ")}
        done = {line.split()[1] for line in log if line.startswith("done ")}
        assert started == done, f"handlers cut off by the stop: {sorted(started - done)}"

        ids = {f"o-{i}" for i in range(60)}
        wait_for(
            lambda: done | {m["id"] for m in seen(staying)} == ids,
            60,
            what="the other replica to take over the rest",
        )
