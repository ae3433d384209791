"""The ASGI front of a member's HTTP API: request limits, metrics, and a fast path.

Why: measured on this machine, FastAPI's per-request machinery (middleware task groups,
dependency resolution, validation models) cost far more CPU than the Raft work behind a
write. The two requests that dominate real traffic -- `PUT /api/v1/kv/{key}` on the
leader and `GET /api/v1/kv/{key}` -- are answered here directly, in plain ASGI.

Rule: the fast path only ever handles a request it fully understands and that is well
formed. Anything else (a follower that must forward, an unknown field, a bad type, a
query parameter it does not know) is handed to the FastAPI app with the body replayed, so
there is exactly one implementation of every error message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from ..kv import KvError, Put, PutResult
from .api import MAX_BODY_BYTES, ApiError, _kv_error, kv_json
from .api_models import MAX_ID
from .member import Member, NotLeaderError, Unavailable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KV_PATH = "/api/v1/kv/"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_PUT_FIELDS = frozenset({"value", "lease", "prev_kv"})


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error_body(error: ApiError) -> bytes:
    return _dumps({"error": error.code, "message": error.message, **error.extra})


class ApiFront:
    def __init__(self, app: ASGIApp, member: Member) -> None:
        self.app = app
        self.member = member

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and (length < 0 or length > MAX_BODY_BYTES):
            await _respond(
                send,
                413,
                _dumps(
                    {
                        "error": "body_too_large",
                        "message": f"request body over {MAX_BODY_BYTES} bytes ({length})",
                    }
                ),
            )
            return
        if scope["method"] in ("PUT", "POST"):
            _treat_body_as_json(scope)
        status = 0

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path: str = scope["path"]
        try:
            if path.startswith(KV_PATH) and len(path) > len(KV_PATH):
                method = scope["method"]
                if method == "PUT" and await self._put(scope, receive, counting_send):
                    return
                if method == "GET" and await self._get(scope, receive, counting_send):
                    return
            await self.app(scope, receive, counting_send)
        finally:
            label = "/".join(path.split("/", 4)[:4]) if path.startswith("/api/") else path
            self.member.metrics.requests.labels(label, str(status)).inc()

    async def _put(self, scope: Scope, receive: Receive, send: Send) -> bool:
        body = await _read_body(receive)
        replay = _replaying(body, receive)
        command = self._parse_put(scope, body) if self.member.is_leader else None
        if command is None:
            await self.app(scope, replay, send)
            return True
        try:
            result = await self.member.propose(command)
        except NotLeaderError:
            await self.app(scope, replay, send)  # leadership moved: FastAPI forwards
            return True
        except Unavailable as error:
            await _respond(send, 503, _dumps({"error": "unavailable", "message": str(error)}))
            return True
        except KvError as error:
            api_error = _kv_error(error)
            await _respond(send, api_error.status, _error_body(api_error))
            return True
        assert isinstance(result, PutResult)
        out: dict[str, Any] = {"revision": result.revision}
        if command.prev_kv:
            out["prev_kv"] = kv_json(result.prev) if result.prev else None
        await _respond(send, 200, _dumps(out))
        return True

    def _parse_put(self, scope: Scope, body: bytes) -> Put | None:
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or not data.keys() <= _PUT_FIELDS:
            return None
        value, lease, prev_kv = data.get("value"), data.get("lease"), data.get("prev_kv", False)
        if not isinstance(value, str) or not isinstance(prev_kv, bool):
            return None
        if lease is not None and (type(lease) is not int or not 1 <= lease <= MAX_ID):
            return None
        try:
            return Put(
                key=scope["path"][len(KV_PATH) :].encode(),
                value=value.encode(),
                lease=lease or 0,
                prev_kv=prev_kv,
            )
        except ValueError:
            return None  # limits: FastAPI's path gives the one error message

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> bool:
        params = dict(parse_qsl(scope.get("query_string", b"").decode()))
        consistency = params.pop("consistency", "linearizable")
        if params or consistency not in ("linearizable", "stale"):
            return False  # revision=, unknown or bad parameters: the full API
        member = self.member
        if consistency == "linearizable":
            try:
                await member.read_barrier()
            except Unavailable as error:
                await _respond(send, 503, _dumps({"error": "unavailable", "message": str(error)}))
                return True
        key = scope["path"][len(KV_PATH) :]
        kv = member.kv.get(key.encode())
        if kv is None:
            missing = ApiError(404, "key_not_found", f"no key {key!r}", revision=member.kv.revision)
            await _respond(send, 404, _error_body(missing))
            return True
        await _respond(send, 200, _dumps({**kv_json(kv), "revision": member.kv.revision}))
        return True


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


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


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
