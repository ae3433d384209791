"""The key-value API: `/api/v1/kv`, `/api/v1/txn`, `/api/v1/compact` and `/api/v1/watch`.

etcd's semantics over HTTP and JSON (keys and values are UTF-8 text). Writes run on the
leader (`Routing.leader_only` forwards them from a follower); reads are linearizable
unless `consistency=stale`, and report the store revision they reflect; a watch streams
events from `start_revision` (resume with the last id + 1). Well-formed single-key puts
and gets are answered by the ASGI fast path (fastpath.py) with the same bytes; these
handlers answer everything else, including every error message.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ..kv import (
    Compact,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    KvError,
    Put,
    PutResult,
    Range,
    RangeResult,
    TxnResult,
    WatchFilter,
    prefix_end,
)
from ..kv import Txn as TxnCommand
from .api_errors import ApiError, kv_error
from .api_models import MAX_ID, CompactBody, PutBody, TxnBody, TxnOpBody
from .member import Member
from .rendering import WatchResponse, kv_json, sse_event, watch_stream
from .routing import Consistency, Routing

_OPS = {"=": CompareOp.EQ, "!=": CompareOp.NE, "<": CompareOp.LT, ">": CompareOp.GT}


def _range_for(key: str, prefix: bool) -> tuple[bytes, bytes | None]:
    raw = key.encode()
    return (raw, prefix_end(raw)) if prefix else (raw, None)


MAX_WATCH_PREFIXES = 256


def _check_prefix_set(prefixes: list[str]) -> None:
    """A prefix set: 1 to MAX_WATCH_PREFIXES non-empty prefixes (overlaps are fine)."""
    if not prefixes or len(prefixes) > MAX_WATCH_PREFIXES:
        raise ApiError(
            400,
            "invalid_request",
            f"prefixes= takes 1 to {MAX_WATCH_PREFIXES} prefixes, got {len(prefixes)}",
        )
    if "" in prefixes:
        raise ApiError(
            400,
            "invalid_request",
            "an empty prefix in prefixes= (to watch every key, use prefix= alone)",
        )


def _render_kv_events(events: list[Event]) -> bytes:
    if len(events) == 1:
        return sse_event(events[0])  # the common case: one write, one frame, no join
    return b"".join(map(sse_event, events))


def kv_watch(
    member: Member,
    start: int,
    *,
    prefix: str | None = None,
    key: str | None = None,
    prefixes: list[str] | None = None,
) -> WatchResponse:
    """The SSE stream of `GET /api/v1/watch` from revision `start`, for a prefix set, a
    prefix, or else a key (FastAPI's handler and the fast path both serve it). Raises
    KvError (`Compacted`) or ValueError (an empty key) before anything is subscribed."""
    if prefixes is not None:
        encoded = [p.encode() for p in prefixes]
        watcher = member.hub.subscribe_prefixes(member.kv, encoded, start)
    else:
        watch_filter = (
            WatchFilter.prefix(prefix.encode())
            if prefix is not None
            else WatchFilter(key=(key or "").encode())
        )
        watcher = member.hub.subscribe(member.kv, watch_filter, start)
    preamble = f": watching from revision {start}\n\n".encode()
    return watch_stream(member.hub, member.metrics, watcher, _render_kv_events, preamble)


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


def txn_json(result: TxnResult) -> dict[str, Any]:
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


def router(member: Member, routing: Routing) -> APIRouter:
    api = APIRouter()
    leader_only, barrier = routing.leader_only, routing.barrier

    @api.put("/api/v1/kv/{key:path}")
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
                kv_error(error)
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

    @api.get("/api/v1/kv/{key:path}")
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
            raise kv_error(error) from error
        if kv is None:
            raise ApiError(404, "key_not_found", f"no key {key!r}", revision=member.kv.revision)
        return {**kv_json(kv), "revision": member.kv.revision}

    @api.get("/api/v1/kv")
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
            raise kv_error(error) from error
        kvs = [kv_json(kv) for kv in found.kvs]
        return {
            "kvs": kvs,
            "more": found.more,
            "next_after": kvs[-1]["key"] if found.more and kvs else None,
            "count": found.count,
            "revision": revision or member.kv.revision,
        }

    @api.delete("/api/v1/kv/{key:path}")
    async def delete(key: str, request: Request, prefix: bool = False) -> Any:
        if not key:
            raise ApiError(400, "invalid_request", "key must not be empty")
        start, end = _range_for(key, prefix)

        async def act() -> Any:
            result = await member.propose(Delete(key=start, range_end=end))
            assert isinstance(result, DeleteResult)
            return {"revision": result.revision, "deleted": result.deleted}

        return await leader_only(request, act)

    @api.delete("/api/v1/kv")
    async def delete_prefix(request: Request, prefix: str = Query(min_length=1)) -> Any:
        return await delete(prefix, request, prefix=True)

    @api.post("/api/v1/txn")
    async def txn(body: TxnBody, request: Request) -> Any:
        try:
            command = TxnCommand(
                compares=tuple(_compare(c) for c in body.compare),
                success=tuple(_txn_op(op) for op in body.success),
                failure=tuple(_txn_op(op) for op in body.failure),
            )
        except KvError as error:
            raise kv_error(error) from error
        except ValueError as error:
            raise ApiError(400, "invalid_request", str(error)) from error

        async def act() -> Any:
            result = await member.propose(command)
            assert isinstance(result, TxnResult)
            return txn_json(result)

        return await leader_only(request, act)

    @api.post("/api/v1/compact")
    async def compact(body: CompactBody, request: Request) -> Any:
        async def act() -> Any:
            await member.propose(Compact(revision=body.revision))
            return {"compact_revision": body.revision}

        return await leader_only(request, act)

    @api.get("/api/v1/watch")
    async def watch(
        request: Request,
        prefix: str | None = None,
        key: str | None = None,
        prefixes: Annotated[list[str] | None, Query()] = None,
        start_revision: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Any:
        given = sum(x is not None for x in (prefix, key, prefixes))
        if given != 1:
            raise ApiError(400, "invalid_request", "give exactly one of prefix=, key= or prefixes=")
        start = start_revision or member.kv.revision + 1
        try:
            if prefixes is not None:
                _check_prefix_set(prefixes)
            return kv_watch(member, start, prefix=prefix, key=key, prefixes=prefixes)
        except KvError as error:
            raise kv_error(error) from error

    return api
