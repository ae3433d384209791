"""What a service adds around every request, for ASGI (FastAPI, Starlette) and WSGI (Flask).

Both middlewares do the same four things, so they share `RequestGate`:

- answer `GET /healthz` (200 while serving, 503 once draining, so active checks and load
  balancers stop sending at once) and `GET /metrics` (Prometheus), before the app sees
  them;
- count requests in flight, which is what draining waits for;
- make the caller's trace context current (`shoal.observe`) so that calls made while
  handling the request carry it on, and echo `x-request-id` in the response;
- record the request's route template, status and duration.

The ASGI one also watches the lifespan protocol: at start-up it (re)installs the SIGTERM
hook (uvicorn installs its own handlers only once it serves), and at shutdown it stops
the service's agent after the app's own shutdown handlers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..observe import REQUEST_ID_HEADER, TraceContext, otel, trace_from_headers, use_trace
from . import metrics

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .service import Service

__all__ = ["AsgiMiddleware", "RequestGate", "WsgiMiddleware"]

UNMATCHED = "unmatched"


class RequestGate:
    """The per-process request bookkeeping both middlewares share (thread-safe)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.name = service.name
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._gauge = metrics.IN_FLIGHT.labels(self.name)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
        self._gauge.inc()

    def leave(
        self, method: str, route: str, status: int, started: float, context: TraceContext
    ) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()
        self._gauge.dec()
        took = time.perf_counter() - started
        metrics.REQUESTS.labels(self.name, method, route, str(status)).inc()
        metrics.REQUEST_SECONDS.labels(self.name, method, route).observe(took)
        if otel.enabled():
            end = time.time_ns()
            otel.record_span(
                f"{method} {route}",
                "server",
                trace_id=context.trace_id,
                span_id=context.span_id,
                parent_id=context.parent_id,
                sampled=context.sampled,
                start_ns=end - int(took * 1e9),
                end_ns=end,
                attributes={
                    "http.request.method": method,
                    "http.route": route,
                    "http.response.status_code": status,
                    "shoal.request_id": context.request_id,
                },
                error=f"status {status}" if status >= 500 else None,
            )

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def special(self, method: str, path: str) -> tuple[int, str, bytes] | None:
        """The answer to a health or metrics request, None for the app's requests."""
        if method not in ("GET", "HEAD"):
            return None
        if path == self.service.health_path:
            status, body = self.service.health()
            return status, "application/json", json.dumps(body).encode()
        if path == self.service.metrics_path:
            return 200, metrics.CONTENT_TYPE_LATEST, metrics.render()
        return None


# -- ASGI -------------------------------------------------------------------------------


class AsgiMiddleware:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service, self.gate = app, service, service.gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        special = self.gate.special(method, scope["path"])
        if special is not None:
            await _send_simple(send, *special, head=method == "HEAD")
            return
        headers = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"x-request-id"):
                headers[name.decode()] = value.decode("latin-1")
        context = trace_from_headers(headers)
        request_id = context.request_id.encode()
        status = 500  # what the client sees if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        started = time.perf_counter()
        self.gate.enter()
        try:
            with use_trace(context):
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.gate.leave(method, template, status, started, context)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.service.server_started()
            elif message["type"] == "lifespan.shutdown":
                # The server stopped accepting and drained; deregister (if a SIGTERM has
                # not already) before the app's own shutdown handlers run.
                await asyncio.to_thread(self.service.stop)
            return message

        return wrapped


async def _send_simple(send: Send, status: int, media: str, body: bytes, head: bool) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


# -- WSGI -------------------------------------------------------------------------------

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ROUTE_KEY = "shoal.route"  # where the Flask hook leaves the matched rule


class WsgiMiddleware:
    def __init__(self, app: WsgiApp, service: Service) -> None:
        self.app, self.service, self.gate = app, service, service.gate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ.get("REQUEST_METHOD", "GET")
        special = self.gate.special(method, environ.get("PATH_INFO", ""))
        if special is not None:
            status, media, body = special
            reason = "OK" if status == 200 else "Service Unavailable"
            start_response(
                f"{status} {reason}",
                [("Content-Type", media), ("Content-Length", str(len(body)))],
            )
            return [b"" if method == "HEAD" else body]
        context = trace_from_headers(
            {
                "traceparent": environ.get("HTTP_TRACEPARENT", ""),
                REQUEST_ID_HEADER: environ.get("HTTP_X_REQUEST_ID", ""),
            }
        )
        state = {"status": 500}

        def start_with_id(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            state["status"] = int(status.split(" ", 1)[0])
            return start_response(status, [*headers, ("X-Request-Id", context.request_id)], *exc)

        started = time.perf_counter()
        self.gate.enter()
        try:
            with use_trace(context):
                answer = self.app(environ, start_with_id)
        except BaseException:
            self.gate.leave(method, environ.get(ROUTE_KEY) or UNMATCHED, 500, started, context)
            raise

        def finish() -> None:
            route = environ.get(ROUTE_KEY) or UNMATCHED
            self.gate.leave(method, route, state["status"], started, context)

        return _Closing(answer, finish)


class _Closing:
    """A WSGI body that runs `finish` once the server closes it: a streamed response is
    in flight until then (PEP 3333: the server always calls close())."""

    def __init__(self, body: Iterable[bytes], finish: Callable[[], None]) -> None:
        self._body, self._finish, self._done = body, finish, False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self._finish()
