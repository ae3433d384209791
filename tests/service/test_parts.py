"""The SDK's parts in-process: trace context, client policies, live settings, middleware."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from pydantic import BaseModel

from shoal.client import ConfigUpdate
from shoal.observe import (
    TraceContext,
    current_trace,
    outgoing_headers,
    parse_traceparent,
    trace_from_headers,
    use_trace,
)
from shoal.resilience import BreakerConfig, OutlierConfig
from shoal.service import ClientPolicy, LiveSettings, PolicyError, Service
from shoal.testing import free_port

# -- trace context ------------------------------------------------------------------------

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_traceparent_is_parsed_and_bad_ones_start_a_new_trace() -> None:
    expected = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    assert parse_traceparent(VALID) == expected
    for bad in (
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 takes no more
    ):
        assert parse_traceparent(bad) is None, bad
    fresh = trace_from_headers({"traceparent": "garbage"})
    assert fresh.parent_id is None and len(fresh.trace_id) == 32


def test_a_request_continues_its_callers_trace_and_calls_pass_it_on() -> None:
    context = trace_from_headers({"traceparent": VALID, "x-request-id": "abc"})
    assert context.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert context.parent_id == "00f067aa0ba902b7" and context.request_id == "abc"
    with use_trace(context):
        sent = outgoing_headers()
    assert current_trace.get() is None
    trace_id, span, sampled = parse_traceparent(sent["traceparent"]) or ("", "", False)
    assert trace_id == context.trace_id and span not in (context.span_id, context.parent_id)
    assert sampled and sent["x-request-id"] == "abc"
    # A request id that is not printable ASCII (or too long) is replaced, not trusted.
    assert trace_from_headers({"x-request-id": "a\nb"}).request_id != "a\nb"
    assert TraceContext.new().child().parent_id is not None


# -- client policy ------------------------------------------------------------------------


def test_client_policy_from_a_config_item() -> None:
    policy = ClientPolicy.from_mapping(
        {
            "balancer": "ring_hash",
            "timeout": "2s",
            "attempt_timeout": "500ms",
            "max_attempts": 2,
            "budget": {"ratio": 0.1, "min_concurrent": 5},
            "breaker": {"failure_rate": 0.3, "open_duration": "10s"},
            "outlier": False,
            "tags": ["v2"],
        }
    )
    assert policy.balancer == "ring_hash" and policy.timeout == 2.0
    assert policy.attempt_timeout == 0.5 and policy.max_attempts == 2
    assert policy.budget_ratio == 0.1 and policy.budget_min_concurrent == 5
    assert policy.breaker == BreakerConfig(failure_rate=0.3, open_duration=10.0)
    assert policy.outlier is None and policy.tags == ("v2",)
    call = policy.call_policy()
    assert call.timeouts.overall == 2.0 and call.timeouts.per_attempt == 0.5
    assert ClientPolicy.from_mapping({"outlier": True}).outlier == OutlierConfig()


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"balancer": "fastest"}, "balancer"),
        ({"timeout": "soon"}, "timeout"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"breaker": {"failure_rate": 2}}, "failure_rate"),
        ({"breaker": {"colour": "red"}}, "breaker.colour"),
        ({"budget": {"ratio": "x"}}, "budget.ratio"),
        ({"retries": 3}, "retries"),
        ([], "mapping"),
    ],
)
def test_a_bad_client_policy_is_refused_naming_the_field(data: object, named: str) -> None:
    with pytest.raises(PolicyError, match=named):
        ClientPolicy.from_mapping(data)


# -- live settings --------------------------------------------------------------------------


class Limits(BaseModel):
    page_size: int = 10


@dataclasses.dataclass
class Plain:
    colour: str


def update(content: str, version: int, fmt: str = "yaml", deleted: bool = False) -> ConfigUpdate:
    return ConfigUpdate(
        item="ns/x", revision=version, version=version, content=content, format=fmt, deleted=deleted
    )


def test_live_settings_keep_the_last_valid_content() -> None:
    live = LiveSettings("ns/x", Limits)
    assert live.value == Limits() and live.version == 0
    seen: list[Limits] = []
    live.on_change(seen.append)
    live.accept(update("page_size: 3\n", 1))
    assert live.wait(1) == Limits(page_size=3) and live.version == 1
    live.accept(update("page_size: lots\n", 2))  # refused: the model says no
    assert live.value == Limits(page_size=3) and live.error is not None
    live.accept(update("", 3, deleted=True))  # deleted: keep running on the last one
    assert live.value == Limits(page_size=3)
    assert seen == [Limits(page_size=3)]
    plain = LiveSettings("ns/y", Plain)
    assert plain.value is None  # no defaults to start from
    plain.accept(update('{"colour": "red"}', 1, "json"))
    assert plain.value == Plain("red")


# -- the middleware, in-process ------------------------------------------------------------


@pytest.fixture
def dead_endpoints() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens: the agent just retries


@pytest.fixture
def fastapi_service(dead_endpoints: str) -> Iterator[tuple[object, Service]]:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, object]:
        context = current_trace.get()
        return {"id": item_id, "trace": context.trace_id if context else None}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    svc = Service("parts-fastapi", app=app, endpoints=dead_endpoints, register=False)
    try:
        yield app, svc
    finally:
        svc.stop()


async def _get(app: object, path: str, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        return await http.get(path, **kw)  # type: ignore[arg-type]


def test_asgi_middleware_health_metrics_trace_and_routes(
    fastapi_service: tuple[object, Service],
) -> None:
    import asyncio

    app, svc = fastapi_service
    health = asyncio.run(_get(app, "/healthz"))
    assert health.status_code == 200 and health.json()["service"] == "parts-fastapi"
    answer = asyncio.run(_get(app, "/items/7", headers={"traceparent": VALID}))
    assert answer.json() == {"id": 7, "trace": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert answer.headers["x-request-id"] == "4bf92f3577b34da6"
    assert asyncio.run(_get(app, "/boom")).status_code == 500
    asyncio.run(_get(app, "/nowhere"))
    metrics = asyncio.run(_get(app, "/metrics")).text
    assert 'route="/items/{item_id}",service="parts-fastapi",status="200"' in metrics
    assert 'route="/boom",service="parts-fastapi",status="500"' in metrics
    assert 'route="unmatched",service="parts-fastapi",status="404"' in metrics
    assert svc.gate.in_flight == 0
    svc.stop()
    assert asyncio.run(_get(app, "/healthz")).status_code == 503


def test_wsgi_middleware_on_flask(dead_endpoints: str) -> None:
    from flask import Flask

    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, object]:
        context = current_trace.get()
        return {"id": user_id, "trace": context.trace_id if context else None}

    svc = Service("parts-flask", app=app, endpoints=dead_endpoints, register=False)
    try:
        client = app.test_client()
        answer = client.get("/users/3", headers={"traceparent": VALID})
        assert answer.json == {"id": 3, "trace": "4bf92f3577b34da6a3ce929d0e0e4736"}
        assert answer.headers["X-Request-Id"] == "4bf92f3577b34da6"
        answer.close()  # a WSGI server closes the body; the request ends there (PEP 3333)
        assert client.get("/healthz").json["state"] == "starting"  # not registered
        metrics = client.get("/metrics").text
        assert 'route="/users/<int:user_id>",service="parts-flask",status="200"' in metrics
        assert svc.gate.in_flight == 0
    finally:
        svc.stop()


def test_a_service_refuses_what_it_cannot_attach_to(dead_endpoints: str) -> None:
    with pytest.raises(TypeError, match="FastAPI, Starlette or Flask"):
        Service("x", app=object(), endpoints=dead_endpoints, register=False)
    with pytest.raises(ValueError, match="service"):
        Service("bad name", endpoints=dead_endpoints, register=False)
