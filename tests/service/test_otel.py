"""OpenTelemetry export: a FastAPI service calling a Flask one exports spans that link up.

A real OTLP/HTTP receiver on loopback (a plain HTTP server decoding the protobuf requests)
gets, for one request with a given `traceparent`: the FastAPI SERVER span (child of the
caller's span), its CLIENT span for the call to Flask (child of that SERVER span), and the
Flask SERVER span (child of the CLIENT span) -- one trace id throughout. Without an
endpoint configured nothing is exported.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.testing import AppProcess, ServerProcess, uvicorn_command, wait_for

from .conftest import REPO

pytest.importorskip("opentelemetry.sdk")
trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

FLASK_APP = str(REPO / "tests" / "service" / "apps" / "flask_plain.py")
TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


class Receiver:
    """An OTLP/HTTP trace receiver: every span it was sent, as (service, span) pairs."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                with lock:
                    for resource_spans in request.resource_spans:
                        names = [
                            a.value.string_value
                            for a in resource_spans.resource.attributes
                            if a.key == "service.name"
                        ]
                        for scope in resource_spans.scope_spans:
                            spans.extend((names[0] if names else "", s) for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, service: str, kind: int) -> list[Any]:
        return [s for name, s in list(self.spans) if name == service and s.kind == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def test_spans_of_one_call_chain_link_up_across_processes(
    server: ServerProcess, tmp_path: Path, receiver: Receiver
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    flask_app = AppProcess(
        [sys.executable, FLASK_APP, "{port}"],
        endpoints=server.url,
        env=env,
        log=tmp_path / "flask.log",
    )
    fastapi_app = AppProcess(
        uvicorn_command("tests.service.apps.fastapi_plain:app"),
        endpoints=server.url,
        env=env,
        log=tmp_path / "fastapi.log",
        cwd=REPO,
    )
    with flask_app, fastapi_app:
        flask_app.wait_registered()
        fastapi_app.wait_registered()
        answer = httpx.get(
            fastapi_app.url + "/peer",
            headers={"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"},
            timeout=20,
        )
        assert answer.status_code == 200, answer.text

        server_kind, client_kind = 2, 3  # opentelemetry.proto's Span.SpanKind values

        def chain() -> tuple[Any, Any, Any] | None:
            front = [
                s for s in receiver.find("plain-fastapi", server_kind) if s.name == "GET /peer"
            ]
            calls = receiver.find("plain-fastapi", client_kind)
            back = receiver.find("plain-flask", server_kind)
            if front and calls and back:
                return front[0], calls[0], back[0]
            return None

        wait_for(lambda: chain() is not None, 20, what="the three spans at the receiver")
        found = chain()
        assert found is not None
        front, call, back = found
        for span in (front, call, back):
            assert span.trace_id.hex() == TRACE
            assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
        assert front.parent_span_id.hex() == CALLER_SPAN
        assert call.parent_span_id == front.span_id
        assert back.parent_span_id == call.span_id
        assert back.name == "GET /whoami"
        attributes = {a.key: a for a in back.attributes}
        assert attributes["http.response.status_code"].value.int_value == 200
        # The health checks and scrapes of /healthz and /metrics are not traced.
        assert not [s for _, s in receiver.spans if "/healthz" in s.name]
    assert "exporting spans of plain-fastapi over OTLP" in (tmp_path / "fastapi.log").read_text()


def test_nothing_is_exported_without_an_endpoint(
    server: ServerProcess, tmp_path: Path, receiver: Receiver
) -> None:
    app = AppProcess(
        uvicorn_command("tests.service.apps.fastapi_plain:app"),
        endpoints=server.url,
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
        log=tmp_path / "fastapi.log",
        cwd=REPO,
    )
    with app:
        app.wait_registered()
        assert httpx.get(app.url + "/whoami", timeout=10).status_code == 200
        log = (tmp_path / "fastapi.log").read_text()
        assert "exporting spans" not in log
    assert receiver.spans == []


def test_a_publish_and_each_groups_handling_are_producer_and_consumer_spans(
    server: ServerProcess, tmp_path: Path, receiver: Receiver
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    publisher = AppProcess(
        [sys.executable, str(REPO / "tests" / "service" / "apps" / "events_flask.py"), "{port}"],
        endpoints=server.url,
        env=env,
        log=tmp_path / "flask.log",
    )
    biller = AppProcess(
        uvicorn_command("tests.service.apps.events_fastapi:app", "--no-access-log"),
        endpoints=server.url,
        env=env,
        log=tmp_path / "fastapi.log",
        cwd=REPO,
    )
    server_kind, producer_kind, consumer_kind = 2, 4, 5  # opentelemetry.proto's SpanKind
    with publisher, biller:
        publisher.wait_registered()
        biller.wait_registered()
        answer = httpx.post(
            publisher.url + "/orders",
            params={"n": 3, "prefix": "traced"},
            headers={"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text

        def spans() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
            request = [
                s for s in receiver.find("orders-flask", server_kind) if s.name == "POST /orders"
            ]
            sends = receiver.find("orders-flask", producer_kind)
            audits = receiver.find("orders-flask", consumer_kind)
            bills = receiver.find("orders-fastapi", consumer_kind)
            return request, sends, audits, bills

        wait_for(
            lambda: [len(found) for found in spans()] == [1, 3, 3, 3],
            30,
            what="1 request, 3 publishes and 3 handlings in each of 2 groups at the receiver",
        )
        (request,), sends, audits, bills = spans()
    assert request.parent_span_id.hex() == CALLER_SPAN
    sent = {s.span_id for s in sends}
    for send in sends:
        assert send.trace_id.hex() == TRACE
        assert send.parent_span_id == request.span_id  # published from that request
        assert send.name == "send orders"
    for group, handled in (("audit", audits), ("billing", bills)):
        # Each group handled each message once, as a child of that message's publish.
        assert sorted(s.parent_span_id for s in handled) == sorted(sent)
        for span in handled:
            assert span.trace_id.hex() == TRACE
            assert span.name == "process orders"
            attributes = {a.key: a.value for a in span.attributes}
            assert attributes["messaging.consumer.group.name"].string_value == group
            assert attributes["messaging.destination.name"].string_value == "orders"
            assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
