"""Apps written the plain way become services by one line (tests/service/apps/*_plain.py).

A Flask app run by `app.run()` and a FastAPI app run by uvicorn: each registers with the
port it really listens on, serves /healthz and /metrics, calls the other by name with
the trace passed on, and on SIGTERM deregisters *before* it stops serving, then exits.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from shoal.client import ControlPlane
from shoal.testing import AppProcess, ServerProcess, uvicorn_command, wait_for

from .conftest import REPO

FLASK_APP = str(REPO / "tests" / "service" / "apps" / "flask_plain.py")


def registered(cp: ControlPlane, service: str) -> list[tuple[str, int]]:
    return [(i.address, i.port) for i in cp.registry.instances(service).instances]


def test_plain_flask_and_fastapi_apps_register_call_each_other_and_stop_in_order(
    server: ServerProcess, tmp_path: Path
) -> None:
    flask_app = AppProcess(
        [sys.executable, FLASK_APP, "{port}"], endpoints=server.url, log=tmp_path / "flask.log"
    )
    fastapi_app = AppProcess(
        uvicorn_command("tests.service.apps.fastapi_plain:app"),
        endpoints=server.url,
        log=tmp_path / "fastapi.log",
        cwd=REPO,
    )
    with flask_app, fastapi_app, ControlPlane(server.url) as cp:
        flask_app.wait_healthy()
        fastapi_app.wait_healthy()
        wait_for(lambda: registered(cp, "plain-flask"), 20, what="the flask app's registration")
        wait_for(lambda: registered(cp, "plain-fastapi"), 20, what="the fastapi registration")
        assert registered(cp, "plain-flask") == [("127.0.0.1", flask_app.port)]
        assert registered(cp, "plain-fastapi") == [("127.0.0.1", fastapi_app.port)]
        instance = cp.registry.instances("plain-flask").instances[0]
        assert instance.check is not None and instance.check.type == "http"

        # FastAPI -> Flask by name, with the trace id carried over and a request id echoed.
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        answer = httpx.get(
            fastapi_app.url + "/peer",
            headers={"traceparent": parent, "x-request-id": "req-42"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == "req-42"
        body = answer.json()
        assert body["my_trace"] == "0af7651916cd43dd8448eb211c80319c"
        assert body["peer"]["port"] == flask_app.port
        assert body["peer"]["trace"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        assert body["peer"]["trace"].split("-")[2] != "b7ad6b7169203331"  # a new span

        health = httpx.get(flask_app.url + "/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["state"] == "serving"
        metrics = httpx.get(fastapi_app.url + "/metrics", timeout=5).text
        assert 'shoal_service_requests_total{method="GET",route="/peer"' in metrics
        assert "shoal_client_requests_total" in metrics

        # SIGTERM: out of the registry first; the app still answers during the grace.
        assert flask_app.proc is not None
        flask_app.proc.send_signal(15)
        wait_for(lambda: not registered(cp, "plain-flask"), 10, interval=0.01, what="its leaving")
        still = httpx.get(flask_app.url + "/whoami", timeout=5)
        assert still.status_code == 200  # deregistered, not yet stopped
        draining = httpx.get(flask_app.url + "/healthz", timeout=5)
        assert draining.status_code == 503 and draining.json()["state"] == "draining"
        started = time.monotonic()
        assert flask_app.proc.wait(30) == 0
        assert time.monotonic() - started < 15

        assert fastapi_app.proc is not None
        fastapi_app.proc.send_signal(15)
        wait_for(lambda: not registered(cp, "plain-fastapi"), 10, interval=0.01, what="its exit")
        assert fastapi_app.proc.wait(30) in (0, -15)  # uvicorn re-raises the SIGTERM it handled


def test_a_request_in_flight_at_sigterm_is_finished_before_the_exit(
    server: ServerProcess, tmp_path: Path
) -> None:
    flask_app = AppProcess(
        [sys.executable, FLASK_APP, "{port}"], endpoints=server.url, log=tmp_path / "flask.log"
    )
    with flask_app, ControlPlane(server.url) as cp:
        flask_app.wait_healthy()
        wait_for(lambda: registered(cp, "plain-flask"), 20, what="registration")
        import threading

        result: dict[str, object] = {}

        def slow_call() -> None:
            response = httpx.get(flask_app.url + "/slow", params={"seconds": 2.5}, timeout=30)
            result["status"] = response.status_code

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.3)
        assert flask_app.proc is not None
        flask_app.proc.send_signal(15)
        caller.join(30)
        assert result.get("status") == 200  # drained, not cut off
        assert flask_app.proc.wait(30) == 0
