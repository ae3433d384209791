"""The native HTTP API of a member, `/api/v1/...` (FastAPI; schema at /api/v1/openapi.json).

Any member accepts any request. Writes, lease keep-alives and membership changes that
reach a follower are forwarded to the leader (one hop, marked so it never loops);
linearizable reads are confirmed through ReadIndex and served locally; `stale` reads and
watches are served by whichever member was asked. Every error is JSON
`{"error": code, "message": text}` with a 4xx status when the request was at fault.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..kv import (
    Compact,
    Compacted,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    FutureRevision,
    KeyValue,
    KvError,
    LeaseGrant,
    LeaseGrantResult,
    LeaseNotFound,
    LeaseRevoke,
    LeaseRevokeResult,
    LimitExceeded,
    Put,
    PutResult,
    Range,
    RangeResult,
    TxnResult,
    WatchFilter,
    prefix_end,
)
from ..kv import Txn as TxnCommand
from ..raft import ConfChangeOp, ProposalRejected
from .api_models import (
    MAX_ID,
    AdvertiseBody,
    CompactBody,
    LeaseGrantBody,
    MemberAddBody,
    PutBody,
    TransferBody,
    TxnBody,
    TxnOpBody,
)
from .member import MEMBERS_PREFIX, Member, MembershipRefused, NotLeaderError, Unavailable
from .peer_addr import format_peer_addr, split_peer_addr
from .watchhub import Watcher

MAX_BODY_BYTES = 2 * 1024 * 1024
LeaseId = Annotated[int, Path(ge=1, le=MAX_ID)]
FORWARDED = "x-shoal-forwarded"
Consistency = Literal["linearizable", "stale"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        self.status, self.code, self.message, self.extra = status, code, message, extra
        super().__init__(message)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def kv_json(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": _text(kv.key),
        "value": _text(kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease or None,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "type": event.type.value.lower(),
        "revision": event.revision,
        "kv": kv_json(event.kv),
        "prev_kv": kv_json(event.prev_kv) if event.prev_kv else None,
    }


@functools.lru_cache(maxsize=8192)
def sse_event(event: Event) -> bytes:
    """One event as an SSE frame, encoded once however many watchers receive it."""
    data = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.revision}\nevent: {event.type.value}\ndata: {data}\n\n".encode()


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


def _kv_error(error: KvError) -> ApiError:
    if isinstance(error, LimitExceeded):
        return ApiError(413, "limit_exceeded", str(error))
    if isinstance(error, Compacted):
        return ApiError(410, "compacted", str(error), compact_revision=error.compacted_revision)
    if isinstance(error, LeaseNotFound):
        return ApiError(404, "lease_not_found", str(error))
    if isinstance(error, FutureRevision):
        return ApiError(400, "future_revision", str(error))
    return ApiError(400, "invalid_request", str(error))


def _range_for(key: str, prefix: bool) -> tuple[bytes, bytes | None]:
    raw = key.encode()
    return (raw, prefix_end(raw)) if prefix else (raw, None)


_OPS = {"=": CompareOp.EQ, "!=": CompareOp.NE, "<": CompareOp.LT, ">": CompareOp.GT}


def _txn_op(body: TxnOpBody) -> Put | Delete | Range:
    chosen = [op for op in (body.put, body.delete, body.get) if op is not None]
    if len(chosen) != 1:
        raise ApiError(400, "invalid_request", "each txn op needs exactly one of put/delete/get")
    if body.put is not None:
        return Put(
            key=body.put.key.encode(), value=body.put.value.encode(), lease=body.put.lease or 0
        )
    if body.delete is not None:
        key, end = _range_for(body.delete.key, body.delete.prefix)
        return Delete(key=key, range_end=end)
    assert body.get is not None
    key, end = _range_for(body.get.key, body.get.prefix)
    return Range(key=key, range_end=end, limit=body.get.limit)


def _compare(body: Any) -> Compare:
    target = CompareTarget[body.target.upper()]
    value: bytes | int | bool = body.value
    if target is CompareTarget.VALUE:
        if not isinstance(body.value, str):
            raise ApiError(400, "invalid_request", "a value compare needs a string value")
        value = body.value.encode()
    return Compare(key=body.key.encode(), target=target, op=_OPS[body.op], value=value)


def _txn_json(result: TxnResult) -> dict[str, Any]:
    responses: list[dict[str, Any]] = []
    for response in result.responses:
        if isinstance(response, PutResult):
            responses.append({"put": {"revision": response.revision}})
        elif isinstance(response, DeleteResult):
            responses.append({"delete": {"deleted": response.deleted}})
        elif isinstance(response, RangeResult):
            responses.append(
                {"get": {"kvs": [kv_json(kv) for kv in response.kvs], "more": response.more}}
            )
    return {"succeeded": result.succeeded, "revision": result.revision, "responses": responses}


def watch_stream(
    member: Member,
    watcher: Watcher,
    render: Callable[[list[Event]], bytes],
    preamble: bytes,
) -> StreamingResponse:
    """Serve a subscribed watcher as Server-Sent Events until it closes or the client goes.

    `render` turns each drained batch of events into SSE frames (KV events, instances,
    config content...). Comments keep idle connections alive through proxies; a watcher
    the hub cut off ends with an `error` event saying where to resume.
    """
    member.metrics.watchers.inc()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield preamble
            while True:
                if not watcher.events and watcher.closed is None:
                    try:
                        await asyncio.wait_for(watcher.wakeup.wait(), 15.0)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                events = watcher.drain()
                chunk = render(events) if events else b""
                if chunk:
                    yield chunk
                if watcher.closed is not None and not watcher.events:
                    reason = json.dumps({"error": "watch_closed", "message": watcher.closed})
                    yield f"event: error\ndata: {reason}\n\n".encode()
                    return
        finally:
            member.hub.unsubscribe(watcher)
            member.metrics.watchers.dec()

    return StreamingResponse(stream(), media_type="text/event-stream")


class Routing:
    """Where a request runs: here if this member can serve it, else on the leader.

    Shared by every router of the API (KV here; registry and config in their modules).
    """

    def __init__(self, member: Member, client: httpx.AsyncClient) -> None:
        self.member = member
        self.client = client

    async def leader_only(self, request: Request, act: Callable[[], Awaitable[Any]]) -> Any:
        """Run `act` here if leader, else forward the whole request to the leader."""
        try:
            return await act()
        except NotLeaderError as error:
            return await self.forward(request, error.leader)
        except Unavailable as error:
            raise ApiError(503, "unavailable", str(error)) from error
        except KvError as error:
            raise _kv_error(error) from error
        except (ProposalRejected, MembershipRefused) as error:
            raise ApiError(409, "rejected", str(error)) from error

    async def forward(self, request: Request, leader: str | None) -> Response:
        if request.headers.get(FORWARDED):
            raise ApiError(503, "no_leader", "forwarded to a member that is not the leader")
        url = self.member.member_url(leader) if leader else None
        if url is None:
            raise ApiError(503, "no_leader", "no leader known yet; retry shortly")
        body = await request.body()
        try:
            upstream = await self.client.request(
                request.method,
                url + request.url.path,
                params=request.query_params,
                content=body,
                headers={"content-type": "application/json", FORWARDED: self.member.name},
            )
        except httpx.HTTPError as error:
            raise ApiError(503, "unavailable", f"leader {leader} unreachable: {error}") from error
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )

    async def barrier(self, consistency: Consistency) -> None:
        """Wait until a linearizable read may be served here (no-op for `stale`)."""
        if consistency == "linearizable":
            try:
                await self.member.read_barrier()
            except Unavailable as error:
                raise ApiError(503, "unavailable", str(error)) from error


def create_app(member: Member) -> FastAPI:
    app = FastAPI(
        title="shoal control plane",
        version=version("shoal"),
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    client = httpx.AsyncClient(timeout=member.config.request_timeout + 1)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.code, error.message, **error.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {item.get('msg')}")
        return _error(400, "invalid_request", "; ".join(problems), details=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> Response:
        # Starlette's own answers (no such route, wrong method) in the API's error shape.
        code = _HTTP_CODES.get(error.status_code, "invalid_request")
        response = _error(error.status_code, code, str(error.detail))
        for name, value in (error.headers or {}).items():
            response.headers[name] = value  # e.g. Allow on a 405
        return response

    routing = Routing(member, client)
    leader_only, barrier = routing.leader_only, routing.barrier

    # -- kv -------------------------------------------------------------------------

    @app.put("/api/v1/kv/{key:path}")
    async def put(key: str, body: PutBody, request: Request) -> Any:
        try:
            command = Put(
                key=key.encode(),
                value=body.value.encode(),
                lease=body.lease or 0,
                prev_kv=body.prev_kv,
            )
        except ValueError as error:
            raise (
                _kv_error(error)
                if isinstance(error, KvError)
                else ApiError(400, "invalid_request", str(error))
            ) from error

        async def act() -> Any:
            result = await member.propose(command)
            assert isinstance(result, PutResult)
            out: dict[str, Any] = {"revision": result.revision}
            if body.prev_kv:
                out["prev_kv"] = kv_json(result.prev) if result.prev else None
            return out

        return await leader_only(request, act)

    @app.get("/api/v1/kv/{key:path}")
    async def get(
        key: str,
        consistency: Consistency = "linearizable",
        revision: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Any:
        if not key:
            raise ApiError(400, "invalid_request", "key must not be empty")
        await barrier(consistency)
        try:
            kv = member.kv.get(key.encode(), revision)
        except KvError as error:
            raise _kv_error(error) from error
        if kv is None:
            raise ApiError(404, "key_not_found", f"no key {key!r}", revision=member.kv.revision)
        return {**kv_json(kv), "revision": member.kv.revision}

    @app.get("/api/v1/kv")
    async def list_keys(
        prefix: str = "",
        limit: int = Query(1000, ge=1, le=10_000),
        after: str | None = None,
        revision: int | None = Query(None, ge=1, le=MAX_ID),
        consistency: Consistency = "linearizable",
    ) -> Any:
        await barrier(consistency)
        start = prefix.encode() if prefix else b"\x00"
        end = prefix_end(prefix.encode()) if prefix else b"\x00"
        if after is not None:
            start = max(start, after.encode() + b"\x00")
        try:
            found = member.kv.range(start, end, limit, revision)
        except KvError as error:
            raise _kv_error(error) from error
        kvs = [kv_json(kv) for kv in found.kvs]
        return {
            "kvs": kvs,
            "more": found.more,
            "next_after": kvs[-1]["key"] if found.more and kvs else None,
            "count": found.count,
            "revision": revision or member.kv.revision,
        }

    @app.delete("/api/v1/kv/{key:path}")
    async def delete(key: str, request: Request, prefix: bool = False) -> Any:
        if not key:
            raise ApiError(400, "invalid_request", "key must not be empty")
        start, end = _range_for(key, prefix)

        async def act() -> Any:
            result = await member.propose(Delete(key=start, range_end=end))
            assert isinstance(result, DeleteResult)
            return {"revision": result.revision, "deleted": result.deleted}

        return await leader_only(request, act)

    @app.delete("/api/v1/kv")
    async def delete_prefix(request: Request, prefix: str = Query(min_length=1)) -> Any:
        return await delete(prefix, request, prefix=True)

    @app.post("/api/v1/txn")
    async def txn(body: TxnBody, request: Request) -> Any:
        try:
            command = TxnCommand(
                compares=tuple(_compare(c) for c in body.compare),
                success=tuple(_txn_op(op) for op in body.success),
                failure=tuple(_txn_op(op) for op in body.failure),
            )
        except KvError as error:
            raise _kv_error(error) from error
        except ValueError as error:
            raise ApiError(400, "invalid_request", str(error)) from error

        async def act() -> Any:
            result = await member.propose(command)
            assert isinstance(result, TxnResult)
            return _txn_json(result)

        return await leader_only(request, act)

    @app.post("/api/v1/compact")
    async def compact(body: CompactBody, request: Request) -> Any:
        async def act() -> Any:
            await member.propose(Compact(revision=body.revision))
            return {"compact_revision": body.revision}

        return await leader_only(request, act)

    # -- leases -----------------------------------------------------------------------

    @app.post("/api/v1/leases")
    async def grant(body: LeaseGrantBody, request: Request) -> Any:
        lease_id = body.id or secrets.randbits(62) + 1

        async def act() -> Any:
            result = await member.propose(LeaseGrant(id=lease_id, ttl_seconds=body.ttl))
            assert isinstance(result, LeaseGrantResult)
            return {"id": result.id, "ttl": result.ttl}

        return await leader_only(request, act)

    @app.delete("/api/v1/leases/{lease_id}")
    async def revoke(lease_id: LeaseId, request: Request) -> Any:
        async def act() -> Any:
            result = await member.propose(LeaseRevoke(id=lease_id))
            assert isinstance(result, LeaseRevokeResult)
            return {"revision": result.revision, "deleted": [_text(k) for k in result.deleted]}

        return await leader_only(request, act)

    @app.post("/api/v1/leases/{lease_id}/keepalive")
    async def keepalive(lease_id: LeaseId, request: Request) -> Any:
        async def act() -> Any:
            await member.caught_up()  # the grant may be in a write not yet applied
            return {"id": lease_id, "ttl": member.keepalive(lease_id)}

        return await leader_only(request, act)

    @app.get("/api/v1/leases/{lease_id}")
    async def time_to_live(lease_id: LeaseId, request: Request) -> Any:
        async def act() -> Any:
            await member.caught_up()
            ttl = member.kv.leases.time_to_live(lease_id, time.monotonic())
            return {
                "id": ttl.id,
                "granted_ttl": ttl.granted_ttl,
                "remaining": round(ttl.remaining, 3),
                "keys": [_text(k) for k in ttl.keys],
            }

        return await leader_only(request, act)

    # -- watch ------------------------------------------------------------------------

    @app.get("/api/v1/watch")
    async def watch(
        request: Request,
        prefix: str | None = None,
        key: str | None = None,
        start_revision: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Any:
        if (prefix is None) == (key is None):
            raise ApiError(400, "invalid_request", "give exactly one of prefix= or key=")
        start = start_revision or member.kv.revision + 1
        try:
            watch_filter = (
                WatchFilter.prefix(prefix.encode())
                if prefix is not None
                else WatchFilter(key=(key or "").encode())
            )
            watcher = member.hub.subscribe(member.kv, watch_filter, start)
        except KvError as error:
            raise _kv_error(error) from error
        return watch_stream(
            member,
            watcher,
            lambda events: b"".join(sse_event(event) for event in events),
            f": watching from revision {start}\n\n".encode(),
        )

    # -- cluster ----------------------------------------------------------------------

    @app.get("/api/v1/cluster")
    async def cluster() -> Any:
        status = member.status
        members = []
        for name in sorted(status.conf.members | {member.name}):
            record = member.kv.get(MEMBERS_PREFIX + name.encode())
            info = json.loads(record.value) if record else {}
            progress = status.progress.get(name)
            members.append(
                {
                    "name": name,
                    "voter": name in status.conf.voters,
                    "leader": name == status.leader,
                    "client_url": info.get("client_url"),
                    "peer_addr": format_peer_addr(*info["peer"]) if "peer" in info else None,
                    "match_index": progress.match if progress else None,
                }
            )
        return {
            "member": member.name,
            "leader": status.leader,
            "term": status.term,
            "role": status.role.value,
            "commit_index": status.commit,
            "applied_index": status.applied,
            "revision": member.kv.revision,
            "members": members,
        }

    @app.post("/api/v1/cluster/members")
    async def add_member(body: MemberAddBody, request: Request) -> Any:
        host, port = split_peer_addr(body.peer_addr)
        op = ConfChangeOp.ADD_LEARNER if body.learner else ConfChangeOp.ADD_VOTER

        async def act() -> Any:
            index = await member.change_membership(
                op, body.name, (host, port), promote=body.learner and body.promote
            )
            if body.client_url:
                record = {"client_url": body.client_url, "peer": [host, port]}
                await member.propose(
                    Put(key=MEMBERS_PREFIX + body.name.encode(), value=json.dumps(record).encode())
                )
            return {"index": index, "name": body.name, "learner": body.learner}

        return await leader_only(request, act)

    @app.put("/api/v1/cluster/members/{name}/address")
    async def advertise(name: str, body: AdvertiseBody, request: Request) -> Any:
        """A member records where clients and peers reach it (each member does at start)."""
        if name not in member.status.conf.members:
            raise ApiError(404, "member_not_found", f"{name} is not a member of this cluster")
        host, port = split_peer_addr(body.peer_addr)
        record = json.dumps({"client_url": body.client_url, "peer": [host, port]}).encode()

        async def act() -> Any:
            result = await member.propose(Put(key=MEMBERS_PREFIX + name.encode(), value=record))
            assert isinstance(result, PutResult)
            return {"revision": result.revision}

        return await leader_only(request, act)

    @app.post("/api/v1/cluster/members/{name}/promote")
    async def promote(name: str, request: Request) -> Any:
        async def act() -> Any:
            await member.caught_up()  # the member's record may be in a write not applied
            try:
                peer = member.peer_of(name)
            except KeyError as error:
                raise ApiError(404, "member_not_found", f"{name} is not a member") from error
            index = await member.change_membership(ConfChangeOp.ADD_VOTER, name, peer)
            return {"index": index, "name": name}

        return await leader_only(request, act)

    @app.delete("/api/v1/cluster/members/{name}")
    async def remove_member(name: str, request: Request) -> Any:
        async def act() -> Any:
            index = await member.change_membership(ConfChangeOp.REMOVE, name, ("", 0))
            return {"index": index, "name": name}

        return await leader_only(request, act)

    @app.post("/api/v1/cluster/transfer")
    async def transfer(body: TransferBody, request: Request) -> Any:
        async def act() -> Any:
            await member.transfer_leadership(body.to)
            return {"transferring_to": body.to}

        return await leader_only(request, act)

    # -- health -----------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok", "member": member.name}

    @app.get("/readyz")
    async def readyz() -> Any:
        if member.leader is None:
            raise ApiError(503, "no_leader", "this member knows no leader")
        return {"status": "ready", "leader": member.leader}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(member.metrics.render(), media_type="text/plain; version=0.0.4")

    app.state.routing = routing  # feature routers (app.py) share it
    app.state.http = client  # closed by the server on shutdown
    return app
