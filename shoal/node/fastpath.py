"""The fast path: the hot requests answered in plain ASGI, without FastAPI.

Why: measured on this machine, FastAPI's per-request machinery (middleware task groups,
dependency resolution, validation models) cost far more CPU than the Raft work behind a
write. The requests that dominate real traffic are answered here directly:
`PUT /api/v1/kv/{key}` on the leader and `GET /api/v1/kv/{key}`; on the leader
`POST /api/v1/txn` when its ops are only puts and it has no compares (the events
batcher's batches, shoal/events/batching.py); for the registry,
instance heartbeats on the leader (a lease keep-alive: no log write, so FastAPI was all of
their cost), registrations on the leader, and discovery
(`GET /api/v1/services/{service}/instances`, answered from the member's `RegistryCache`);
and `GET /api/v1/watch?prefix=P` or `?key=K` (optionally `&start_revision=N`): a watch
stream's every event resumed its task through FastAPI's and Starlette's layers, most of a
fan-out's CPU per watcher after the socket write (issue 14's 1,000-watcher goal).

Rule: the fast path only ever handles a request it fully understands and that is well
formed, and answers it with the bytes the FastAPI handler would send (the same
renderings, rendering.py; tests/node/test_front.py compares the two). Anything else (a
follower that must forward, an unknown field, a bad type, a query parameter it does not
know, an error it would have to word) is declined -- `handle` returns False and the front
(front.py) hands the request to FastAPI with the body replayed -- so there is exactly
one implementation of every error message. Nothing here reads the body or applies the
boundary rules: the front has done both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from ..kv import KvError, Put, PutResult, Txn, TxnResult
from ..registry import RegistryError, check_name, instance_key
from .api_errors import ApiError, kv_error
from .api_kv import kv_watch, txn_json
from .api_models import MAX_ID
from .api_registry import (
    instance_not_found,
    parse_discovery_query,
    register_fields,
    register_instance,
)
from .member import Member, NotLeaderError, Unavailable
from .registry_cache import RegistryCache
from .rendering import json_bytes, kv_json, respond_json

KV_PATH = "/api/v1/kv/"
TXN_PATH = "/api/v1/txn"
SERVICES_PATH = "/api/v1/services/"
WATCH_PATH = "/api/v1/watch"
_PUT_FIELDS = frozenset({"value", "lease", "prev_kv"})
_TXN_FIELDS = frozenset({"compare", "success", "failure"})
_TXN_PUT_FIELDS = frozenset({"key", "value", "lease"})
_WATCH_FIELDS = frozenset({"prefix", "key", "start_revision"})
_MAX_ID_DIGITS = len(str(MAX_ID))  # int() of a longer string is refused or slow


def _unavailable(error: Unavailable) -> bytes:
    return ApiError(503, "unavailable", str(error)).body()


class FastPath:
    """Answers the hot requests of one member (see the module docstring)."""

    def __init__(self, member: Member, cache: RegistryCache) -> None:
        self.member = member
        self.cache = cache

    async def handle(self, scope: Scope, data: Any, receive: Receive, send: Send) -> bool:
        """Answer the request if it is one of ours; False (nothing sent) to decline.

        `data` is the parsed JSON body (`boundary.NO_BODY` if none); `receive` is past
        the body (a stream watches it for the client's disconnect)."""
        path: str = scope["path"]
        method = scope["method"]
        if path.startswith(KV_PATH) and len(path) > len(KV_PATH):
            if method == "PUT":
                return await self._put(scope, data, send)
            if method == "GET":
                return await self._get(scope, send)
            return False
        if path == TXN_PATH and method == "POST":
            return await self._txn(scope, data, send)
        if path.startswith(SERVICES_PATH):
            return await self._registry(scope, data, send)
        if path == WATCH_PATH and method == "GET":
            return await self._watch(scope, receive, send)
        return False

    async def _watch(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """One prefix or one key, from now or from a valid revision; else FastAPI words
        the error (or serves a prefix set)."""
        query = scope.get("query_string", b"").decode()  # the front checked it is UTF-8
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return False
        fields = dict(pairs)
        if len(fields) != len(pairs) or not fields.keys() <= _WATCH_FIELDS:
            return False
        if ("prefix" in fields) == ("key" in fields):
            return False
        start_text = fields.get("start_revision")
        if start_text is None:
            start = self.member.kv.revision + 1
        elif (
            len(start_text) <= _MAX_ID_DIGITS
            and start_text.isascii()
            and start_text.isdigit()
            and 1 <= int(start_text) <= MAX_ID
        ):
            start = int(start_text)
        else:
            return False
        try:
            prefix, key = fields.get("prefix"), fields.get("key")
            stream = kv_watch(self.member, start, prefix=prefix, key=key)
        except (KvError, ValueError):
            return False  # an empty key, a compacted start: FastAPI's handler words it
        await stream(scope, receive, send)
        return True

    # -- the key-value store ----------------------------------------------------------

    async def _put(self, scope: Scope, data: Any, send: Send) -> bool:
        command = self._parse_put(scope, data) if self.member.is_leader else None
        if command is None:
            return False

        def answer(result: Any) -> dict[str, Any]:
            assert isinstance(result, PutResult)
            out: dict[str, Any] = {"revision": result.revision}
            if command.prev_kv:
                out["prev_kv"] = kv_json(result.prev) if result.prev else None
            return out

        return await self._propose(command, answer, send)

    async def _propose(
        self, command: Put | Txn, answer: Callable[[Any], dict[str, Any]], send: Send
    ) -> bool:
        """Propose `command` and answer 200 with `answer(result)`, or the API's error;
        False (FastAPI takes over) if leadership moved meanwhile."""
        try:
            result = await self.member.propose(command)
        except NotLeaderError:
            return False  # leadership moved: FastAPI forwards
        except Unavailable as error:
            await respond_json(send, 503, _unavailable(error))
            return True
        except KvError as error:
            api_error = kv_error(error)
            await respond_json(send, api_error.status, api_error.body())
            return True
        await respond_json(send, 200, json_bytes(answer(result)))
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

    async def _txn(self, scope: Scope, data: Any, send: Send) -> bool:
        """A txn of puts only, without compares (what the events batcher sends)."""
        command = self._parse_txn(scope, data) if self.member.is_leader else None
        if command is None:
            return False

        def answer(result: Any) -> dict[str, Any]:
            assert isinstance(result, TxnResult)
            return txn_json(result)

        return await self._propose(command, answer, send)

    def _parse_txn(self, scope: Scope, data: Any) -> Txn | None:
        if scope.get("query_string") or not isinstance(data, dict):
            return None
        if not data.keys() <= _TXN_FIELDS or data.get("compare") or data.get("failure"):
            return None
        if not all(type(data.get(f, [])) is list for f in _TXN_FIELDS):
            return None
        ops = data.get("success")
        if not ops:
            return None
        puts = []
        for op in ops:
            if type(op) is not dict or op.keys() != {"put"}:
                return None
            put = _txn_put(op["put"])
            if put is None:
                return None
            puts.append(put)
        try:
            return Txn(compares=(), success=tuple(puts), failure=())
        except (KvError, ValueError):
            return None  # limits: FastAPI gives the one error message

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
                await respond_json(send, 503, _unavailable(error))
                return True
        key = scope["path"][len(KV_PATH) :]
        kv = member.kv.get(key.encode())
        if kv is None:
            missing = ApiError(404, "key_not_found", f"no key {key!r}", revision=member.kv.revision)
            await respond_json(send, 404, missing.body())
            return True
        await respond_json(send, 200, json_bytes({**kv_json(kv), "revision": member.kv.revision}))
        return True

    # -- the registry -------------------------------------------------------------------

    async def _registry(self, scope: Scope, data: Any, send: Send) -> bool:
        parts = scope["path"][len(SERVICES_PATH) :].split("/")
        if len(parts) < 2 or parts[1] != "instances" or not _names(parts[0], *parts[2:3]):
            return False
        method = scope["method"]
        if len(parts) == 4 and parts[3] == "heartbeat" and method == "PUT":
            return await self._heartbeat(scope, send, parts[0], parts[2])
        if len(parts) == 3 and method == "PUT":
            return await self._register(scope, data, send, parts[0], parts[2])
        if len(parts) == 2 and method == "GET":
            return await self._discover(scope, send, parts[0])
        return False

    async def _register(
        self, scope: Scope, data: Any, send: Send, service: str, instance_id: str
    ) -> bool:
        member = self.member
        if not member.is_leader or scope.get("query_string"):
            return False
        fields = register_fields(data)
        if fields is None:
            return False
        try:
            out = await register_instance(member, service, instance_id, fields)
        except (NotLeaderError, RegistryError):
            return False  # FastAPI forwards it / words the error (nothing was proposed)
        except Unavailable as error:
            await respond_json(send, 503, _unavailable(error))
            return True
        except KvError as error:
            api_error = kv_error(error)
            await respond_json(send, api_error.status, api_error.body())
            return True
        await respond_json(send, 200, json_bytes(out))
        return True

    async def _heartbeat(self, scope: Scope, send: Send, service: str, instance_id: str) -> bool:
        member = self.member
        # A leader not caught up yet may lack the instance: FastAPI's handler waits.
        if not member.is_caught_up or scope.get("query_string"):
            return False
        kv = member.kv.get(instance_key(service, instance_id).encode())
        if kv is None:
            # Answered here too: after a mass expiry every client gets this at once.
            await respond_json(send, 404, instance_not_found(service, instance_id).body())
            return True
        if not kv.lease:
            return False  # FastAPI words the error
        try:
            ttl = member.keepalive(kv.lease)
        except (NotLeaderError, Unavailable, KvError):
            return False  # FastAPI meets the same error and words it
        # Names hold only [A-Za-z0-9._-]: nothing to escape.
        out = b'{"id":"%s","lease":%d,"ttl":%d}' % (instance_id.encode(), kv.lease, ttl)
        await respond_json(send, 200, out)
        return True

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
                await respond_json(send, 503, _unavailable(error))
                return True
        body = self.cache.discovery(member.kv, service, query, member.kv.revision)
        await respond_json(send, 200, body)
        return True


def _txn_put(body: Any) -> Put | None:
    """One txn op's `put` as api_models.PutOp would accept it, else None (FastAPI says why)."""
    if type(body) is not dict or not body.keys() <= _TXN_PUT_FIELDS:
        return None
    key, value, lease = body.get("key"), body.get("value"), body.get("lease")
    if type(key) is not str or not key or type(value) is not str:
        return None
    if lease is not None and (type(lease) is not int or not 1 <= lease <= MAX_ID):
        return None
    try:
        return Put(key=key.encode(), value=value.encode(), lease=lease or 0)
    except ValueError:
        return None


def _names(service: str, *instance_id: str) -> bool:
    """Whether these are a valid service name and instance id (else FastAPI says why)."""
    try:
        check_name(service, "service")
        for value in instance_id:
            check_name(value, "id")
    except RegistryError:
        return False
    return True


__all__ = ["KV_PATH", "SERVICES_PATH", "TXN_PATH", "FastPath"]
