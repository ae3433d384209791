"""OpenTelemetry: the gateway exports a SERVER span per proxied request, linked both ways.

A real OTLP/HTTP receiver on loopback (`tests.service.test_otel.Receiver`) gets the
gateway's span and the upstream's: the gateway's span is the child of the client's
`traceparent`, the upstream's SERVER span is the gateway span's child, one trace id
throughout; a retried request carries its failed attempt as an event. Without an
endpoint configured the gateway exports nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shoal.testing import wait_for

from .conftest import GatewayFactory, UpstreamFactory, route

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

from tests.service.test_otel import Receiver

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER_KIND = 2  # opentelemetry.proto's Span.SpanKind.SPAN_KIND_SERVER


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver, and the OTLP variables pointing at it for every process started after."""
    r = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def _attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        value = a.value
        out[a.key] = value.string_value if value.HasField("string_value") else value.int_value
    return out


def test_a_proxied_request_is_a_server_span_between_the_client_and_the_upstream(
    receiver: Receiver, upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    upstreams(1)
    gw = gateway({"routes": [route("/", name="all")]})
    answer = httpx.get(
        gw.url + "/work", headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"}, timeout=20
    )
    assert answer.status_code == 200, answer.text
    instance = answer.json()["instance"]

    def spans() -> tuple[Any, Any] | None:
        ours = [s for s in receiver.find("shoal-gateway", SERVER_KIND) if s.name == "GET all"]
        theirs = [s for s in receiver.find("echo", SERVER_KIND) if s.name == "GET /work"]
        return (ours[0], theirs[0]) if ours and theirs else None

    wait_for(lambda: spans() is not None, 20, what="the gateway's and the upstream's spans")
    found = spans()
    assert found is not None
    ours, theirs = found
    assert ours.trace_id.hex() == theirs.trace_id.hex() == TRACE
    assert ours.parent_span_id.hex() == CLIENT_SPAN
    assert theirs.parent_span_id == ours.span_id
    assert ours.end_time_unix_nano >= ours.start_time_unix_nano > 0
    attributes = _attributes(ours)
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == "all"
    assert attributes["url.path"] == "/work"
    assert attributes["http.response.status_code"] == 200
    assert attributes["shoal.upstream.service"] == "echo"
    assert attributes["shoal.upstream.instance"] == instance
    assert attributes["shoal.attempts"] == 1
    assert attributes["shoal.request_id"] == answer.headers["x-request-id"]
    assert list(ours.events) == []
    assert "exporting spans of shoal-gateway over OTLP" in gw.log()


def test_a_retried_request_carries_its_failed_attempt_as_an_event(
    receiver: Receiver, upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    bad_app, _ = upstreams(2)
    policy = {
        "balancer": "round_robin",
        "outlier": False,
        "breaker": False,
        "retry_statuses": [500],
    }
    gw = gateway({"routes": [route("/", name="all", policy=policy)]})
    httpx.post(bad_app.url + "/admin/mode", json={"mode": "fail"}, timeout=5)
    bad = httpx.get(bad_app.url + "/echo/x", timeout=5).json()["instance"]
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        # Round robin over two: of two requests in a row, one goes to the bad one first.
        assert [client.get("/work").status_code for _ in range(4)] == [200] * 4

    def retried() -> list[Any]:
        return [
            s
            for s in receiver.find("shoal-gateway", SERVER_KIND)
            if _attributes(s).get("shoal.attempts") == 2
        ]

    wait_for(lambda: bool(retried()), 20, what="a span of a retried request")
    span = retried()[0]
    attributes = _attributes(span)
    assert attributes["http.response.status_code"] == 200
    assert attributes["shoal.retries"] == 1
    assert attributes["shoal.upstream.instance"] != bad
    assert len(span.parent_span_id) == 0  # the client sent no traceparent: a new trace
    (event,) = span.events
    assert event.name == "attempt failed"
    assert event.time_unix_nano >= span.start_time_unix_nano
    details = _attributes(event)
    assert details["shoal.upstream.instance"] == bad
    assert details["shoal.attempt"] == 1
    assert details["shoal.outcome"] == "failure"
    assert details["shoal.problem"] == "answered 500"


def test_without_an_endpoint_the_gateway_exports_nothing(
    receiver: Receiver,
    upstreams: UpstreamFactory,
    gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstreams(1)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")  # for the gateway only
    gw = gateway({"routes": [route("/", name="all")]})
    for _ in range(3):
        assert httpx.get(gw.url + "/work", timeout=10).status_code == 200
    wait_for(lambda: bool(receiver.find("echo", SERVER_KIND)), 20, what="the upstream's spans")
    assert receiver.find("shoal-gateway", SERVER_KIND) == []
    assert "exporting spans" not in gw.log()
