"""The ASGI front of a member's HTTP API: what every request passes before a handler.

Theory of operation. uvicorn calls `ApiFront`; for each HTTP request it

1. counts the request for metrics by route label and status (`shoal_http_requests`) and
   times it to its first response byte (`shoal_http_request_duration_seconds`), keeping
   the metric children it has seen (`labels()` costs a lock per call);
2. applies the boundary rules of boundary.py -- the body limit while reading (chunked or
   not; 413 and the connection closed past it), a UTF-8 path and query, and a body that
   is JSON whose every text is encodable -- one implementation each, so the fast path and
   FastAPI cannot answer the same bad request differently;
3. offers the request to the fast path (fastpath.py), which answers the hot requests in
   plain ASGI or declines;
4. otherwise hands it to the FastAPI app (app.py) with the body replayed.

Other scopes (lifespan, websocket) go straight to the app. `fast=None` sends everything
to FastAPI: the in-process tests compare the two paths' answers that way.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_errors import ApiError
from .boundary import NO_BODY, BodyRead, check_target, parse_json_body, read_body
from .fastpath import FastPath
from .member import Member
from .rendering import json_bytes, respond_json

MAX_BODY_BYTES = 2 * 1024 * 1024


class ApiFront:
    """`ApiFront(app, member, fast)`: the member's ASGI application (see the module)."""

    def __init__(self, app: ASGIApp, member: Member, fast: FastPath | None) -> None:
        self.app = app
        self.member = member
        self.fast = fast
        # Counter children by (route, status): `labels()` costs a lock and a tuple per call.
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}  # duration histogram children by route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        started = time.perf_counter()
        answered = 0.0  # when the response began: a stream's duration is to its first byte

        async def counting_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = time.perf_counter()
            await send(message)

        path: str = scope["path"]
        try:
            await self._route(scope, receive, counting_send)
        finally:
            # Route labels, not raw paths: `/api/v1/kv`, `/ui`, `/metrics` (a crawler's
            # random paths must not become series of their own).
            if path.startswith("/api/"):
                label = "/".join(path.split("/", 4)[:4])
            else:
                label = "/" + path.split("/", 2)[1] if len(path) > 1 else "/"
            counter = self._counted.get((label, status))
            if counter is None:
                counter = self.member.metrics.requests.labels(label, str(status))
                if len(self._counted) < 1024:
                    self._counted[(label, status)] = counter
            counter.inc()
            timer = self._timed.get(label)
            if timer is None:
                timer = self.member.metrics.request_seconds.labels(label)
                if len(self._timed) < 256:
                    self._timed[label] = timer
            timer.observe((answered or time.perf_counter()) - started)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _content_length(scope)
        if length is not None and (length < 0 or length > MAX_BODY_BYTES):
            await _too_large(send, f"request body over {MAX_BODY_BYTES} bytes ({length})")
            return
        refused = check_target(scope.get("raw_path") or b"", scope.get("query_string", b""))
        if refused is not None:
            await respond_json(send, refused.status, refused.body())
            return
        body, ending = await read_body(receive, MAX_BODY_BYTES)
        if ending is BodyRead.TOO_LARGE:
            await _too_large(send, f"request body over {MAX_BODY_BYTES} bytes")
            return
        if ending is BodyRead.DISCONNECTED:
            return  # no complete request, nobody to answer
        data: Any = NO_BODY
        if scope["method"] in ("PUT", "POST"):
            _treat_body_as_json(scope)
            try:
                data = parse_json_body(body)
            except ApiError as error:
                await respond_json(send, error.status, error.body())
                return
        if self.fast is not None and await self.fast.handle(scope, data, receive, send):
            return
        await self.app(scope, _replaying(body, receive), send)


def _treat_body_as_json(scope: Scope) -> None:
    # Bodies are JSON whatever the client labelled them (curl -d says form-urlencoded).
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    scope["headers"] = headers


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


async def _too_large(send: Send, message: str) -> None:
    """413, and close the connection: the rest of the body is never read."""
    body = json_bytes({"error": "body_too_large", "message": message})
    await respond_json(send, 413, body, close=True)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields the already-read body once, then defers to the original."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


__all__ = ["MAX_BODY_BYTES", "ApiFront"]
