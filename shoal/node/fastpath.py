"""The ASGI front of a member's HTTP API: request limits, metrics, and a fast path.

Why: measured on this machine, FastAPI's per-request machinery (middleware task groups,
dependency resolution, validation models) cost far more CPU than the Raft work behind a
write. The requests that dominate real traffic are answered here directly, in plain ASGI:
`PUT /api/v1/kv/{key}` on the leader and `GET /api/v1/kv/{key}`; for the registry,
instance heartbeats on the leader (a lease keep-alive: no log write, so FastAPI was all of
their cost), registrations on the leader, and discovery
(`GET /api/v1/services/{service}/instances`, answered from `registry_cache`).

Rule: the fast path only ever handles a request it fully understands and that is well
formed. Anything else (a follower that must forward, an unknown field, a bad type, a
query parameter it does not know) is handed to the FastAPI app with the body replayed, so
there is exactly one implementation of every error message.

Before either sees a request, the front applies the boundary rules of `boundary.py` to
every request: the body limit while reading (chunked or not), a UTF-8 path and query, and
a body that is JSON whose every text is encodable -- one implementation each, so the fast
path and FastAPI cannot answer the same bad request differently.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from ..kv import KvError, Put, PutResult
from ..registry import RegistryError, check_name, instance_key
from .api import MAX_BODY_BYTES, ApiError, _kv_error, kv_json
from .api_models import MAX_ID
from .api_registry import (
    instance_not_found,
    parse_discovery_query,
    register_fields,
    register_instance,
    registry_cache,
)
from .boundary import NO_BODY, BodyRead, check_target, parse_json_body, read_body
from .member import Member, NotLeaderError, Unavailable
from .registry_cache import json_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KV_PATH = "/api/v1/kv/"
SERVICES_PATH = "/api/v1/services/"
_PUT_FIELDS = frozenset({"value", "lease", "prev_kv"})


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error_body(error: ApiError) -> bytes:
    return _dumps({"error": error.code, "message": error.message, **error.extra})


class ApiFront:
    def __init__(self, app: ASGIApp, member: Member) -> None:
        self.app = app
        self.member = member
        # Counter children by (route, status): `labels()` costs a lock and a tuple per call.
        self._counted: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path: str = scope["path"]
        try:
            await self._route(scope, receive, counting_send)
        finally:
            label = "/".join(path.split("/", 4)[:4]) if path.startswith("/api/") else path
            counter = self._counted.get((label, status))
            if counter is None:
                counter = self.member.metrics.requests.labels(label, str(status))
                if len(self._counted) < 1024:  # paths outside /api/ are unbounded
                    self._counted[(label, status)] = counter
            counter.inc()

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _content_length(scope)
        if length is not None and (length < 0 or length > MAX_BODY_BYTES):
            await _too_large(send, f"request body over {MAX_BODY_BYTES} bytes ({length})")
            return
        refused = check_target(scope.get("raw_path") or b"", scope.get("query_string", b""))
        if refused is not None:
            await _respond(send, refused.status, _error_body(refused))
            return
        body, ending = await read_body(receive, MAX_BODY_BYTES)
        if ending is BodyRead.TOO_LARGE:
            await _too_large(send, f"request body over {MAX_BODY_BYTES} bytes")
            return
        if ending is BodyRead.DISCONNECTED:
            return  # no complete request, nobody to answer
        method = scope["method"]
        data: Any = NO_BODY
        if method in ("PUT", "POST"):
            _treat_body_as_json(scope)
            try:
                data = parse_json_body(body)
            except ApiError as error:
                await _respond(send, error.status, _error_body(error))
                return
        replay = _replaying(body, receive)
        path: str = scope["path"]
        if path.startswith(KV_PATH) and len(path) > len(KV_PATH):
            if method == "PUT" and await self._put(scope, data, replay, send):
                return
            if method == "GET" and await self._get(scope, send):
                return
        elif path.startswith(SERVICES_PATH) and await self._registry(scope, data, replay, send):
            return
        await self.app(scope, replay, send)

    async def _put(self, scope: Scope, data: Any, replay: Receive, send: Send) -> bool:
        command = self._parse_put(scope, data) if self.member.is_leader else None
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

    def _parse_put(self, scope: Scope, data: Any) -> Put | None:
        if scope.get("query_string") or not isinstance(data, dict):
            return None
        if not data.keys() <= _PUT_FIELDS:
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

    async def _get(self, scope: Scope, send: Send) -> bool:
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

    # -- the registry -------------------------------------------------------------------

    async def _registry(self, scope: Scope, data: Any, replay: Receive, send: Send) -> bool:
        """Route a /api/v1/services/... request; False: not one of ours, untouched."""
        parts = scope["path"][len(SERVICES_PATH) :].split("/")
        if len(parts) < 2 or parts[1] != "instances" or not _names(parts[0], *parts[2:3]):
            return False
        method = scope["method"]
        if len(parts) == 4 and parts[3] == "heartbeat" and method == "PUT":
            await self._heartbeat(scope, replay, send, parts[0], parts[2])
            return True
        if len(parts) == 3 and method == "PUT":
            await self._register(scope, data, replay, send, parts[0], parts[2])
            return True
        if len(parts) == 2 and method == "GET":
            return await self._discover(scope, send, parts[0])
        return False

    async def _register(
        self,
        scope: Scope,
        data: Any,
        replay: Receive,
        send: Send,
        service: str,
        instance_id: str,
    ) -> None:
        member = self.member
        fields = None
        if member.is_leader and not scope.get("query_string"):
            fields = register_fields(data)
        if fields is not None:
            try:
                out = await register_instance(member, service, instance_id, fields)
            except (NotLeaderError, RegistryError):
                pass  # FastAPI forwards it / words the error (nothing was proposed)
            except Unavailable as error:
                await _respond(send, 503, _dumps({"error": "unavailable", "message": str(error)}))
                return
            except KvError as error:
                api_error = _kv_error(error)
                await _respond(send, api_error.status, _error_body(api_error))
                return
            else:
                await _respond(send, 200, json_bytes(out))
                return
        await self.app(scope, replay, send)

    async def _heartbeat(
        self, scope: Scope, replay: Receive, send: Send, service: str, instance_id: str
    ) -> None:
        member = self.member
        # A leader not caught up yet may lack the instance: FastAPI's handler waits.
        if member.is_caught_up and not scope.get("query_string"):
            kv = member.kv.get(instance_key(service, instance_id).encode())
            if kv is None:
                # Answered here too: after a mass expiry every client gets this at once.
                await _respond(send, 404, _error_body(instance_not_found(service, instance_id)))
                return
            if kv.lease:
                try:
                    ttl = member.keepalive(kv.lease)
                except (NotLeaderError, Unavailable, KvError):
                    pass  # FastAPI meets the same error and words it
                else:
                    # Names hold only [A-Za-z0-9._-]: nothing to escape.
                    out = b'{"id":"%s","lease":%d,"ttl":%d}' % (
                        instance_id.encode(),
                        kv.lease,
                        ttl,
                    )
                    await _respond(send, 200, out)
                    return
        # A follower (FastAPI forwards), an instance without a lease, a lost lease...
        await self.app(scope, replay, send)

    async def _discover(self, scope: Scope, send: Send, service: str) -> bool:
        query_string = scope.get("query_string", b"").decode("latin-1")
        try:
            consistency, query = parse_discovery_query(
                parse_qsl(query_string, keep_blank_values=True)
            )
        except (ApiError, ValueError):
            return False  # FastAPI words the error
        member = self.member
        if consistency == "linearizable":
            try:
                await member.read_barrier()
            except Unavailable as error:
                await _respond(send, 503, _dumps({"error": "unavailable", "message": str(error)}))
                return True
        body = registry_cache(member).discovery(member.kv, service, query, member.kv.revision)
        await _respond(send, 200, body)
        return True


def _names(service: str, *instance_id: str) -> bool:
    """Whether these are a valid service name and instance id (else FastAPI says why)."""
    try:
        check_name(service, "service")
        for value in instance_id:
            check_name(value, "id")
    except RegistryError:
        return False
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


async def _too_large(send: Send, message: str) -> None:
    """413, and close the connection: the rest of the body is never read."""
    body = _dumps({"error": "body_too_large", "message": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
