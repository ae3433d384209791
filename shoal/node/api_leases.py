"""The lease API: `/api/v1/leases` -- grant, revoke, keep alive, time to live, and the
keep-alive stream.

Leases are leader-local (DESIGN.md decision 3): grants and revokes go through the log,
keep-alives are answered by the leader alone (member.py reports them through the log once
per election timeout). A follower forwards every one of these requests except the
stream, which it answers with a 307 to the leader: a stream must be held by the member
that keeps the lease alive.

`GET /api/v1/leases/{id}/keepalive-stream` keeps the lease alive every ttl/3 while the
client's connection stays open, and revokes the lease the moment it closes, so a process
that dies takes its keys (its registry instances) with it at once (decision 7).
Starlette's StreamingResponse only notices a gone client when a write fails (ASGI spec
>= 2.4), which could be ttl/3 later, so the stream is a small ASGI response that listens
for `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from ..kv import KvError, LeaseGrant, LeaseGrantResult, LeaseRevoke, LeaseRevokeResult
from .api_errors import ApiError, kv_error
from .api_models import MAX_ID, LeaseGrantBody
from .member import Member, NotLeaderError, Unavailable
from .routing import Routing

LeaseId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def router(member: Member, routing: Routing) -> APIRouter:
    api = APIRouter()
    leader_only = routing.leader_only

    @api.post("/api/v1/leases")
    async def grant(body: LeaseGrantBody, request: Request) -> Any:
        lease_id = body.id or secrets.randbits(62) + 1

        async def act() -> Any:
            result = await member.propose(LeaseGrant(id=lease_id, ttl_seconds=body.ttl))
            assert isinstance(result, LeaseGrantResult)
            return {"id": result.id, "ttl": result.ttl}

        return await leader_only(request, act)

    @api.delete("/api/v1/leases/{lease_id}")
    async def revoke(lease_id: LeaseId, request: Request) -> Any:
        async def act() -> Any:
            result = await member.propose(LeaseRevoke(id=lease_id))
            assert isinstance(result, LeaseRevokeResult)
            return {"revision": result.revision, "deleted": [_text(k) for k in result.deleted]}

        return await leader_only(request, act)

    @api.post("/api/v1/leases/{lease_id}/keepalive")
    async def keepalive(lease_id: LeaseId, request: Request) -> Any:
        async def act() -> Any:
            await member.caught_up()  # the grant may be in a write not yet applied
            return {"id": lease_id, "ttl": member.keepalive(lease_id)}

        return await leader_only(request, act)

    @api.get("/api/v1/leases/{lease_id}")
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

    @api.get("/api/v1/leases/{lease_id}/keepalive-stream")
    async def keepalive_stream(
        lease_id: LeaseId, request: Request, revoke_on_close: bool = True
    ) -> Response:
        if not member.is_leader:
            url = member.member_url(member.leader) if member.leader else None
            if url is None:
                raise ApiError(503, "no_leader", "no leader known to serve the keep-alive stream")
            target = f"{url.rstrip('/')}{request.url.path}"
            if request.url.query:
                target += f"?{request.url.query}"
            return RedirectResponse(target, status_code=307)
        try:
            await member.caught_up()
            ttl = member.keepalive(lease_id)
        except KvError as error:
            raise kv_error(error) from error
        except Unavailable as error:
            raise ApiError(503, "unavailable", str(error)) from error
        except NotLeaderError as error:
            raise ApiError(503, "no_leader", str(error)) from error

        def on_close() -> None:
            if revoke_on_close:
                member.propose_nowait(LeaseRevoke(id=lease_id))

        return KeepAliveStream(member, lease_id, ttl, on_close)

    return api


class KeepAliveStream(Response):
    """SSE: `event: keepalive` every ttl/3 while the client stays; `on_close()` once it
    goes. Ends with `event: error` if this member stops leading or the lease is gone."""

    media_type = "text/event-stream"

    def __init__(
        self, member: Member, lease_id: int, ttl: int, on_close: Callable[[], None]
    ) -> None:
        # Not Response.__init__: it would declare content-length: 0 for a streamed body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
        ]
        self.member, self.lease_id, self.ttl, self.on_close = member, lease_id, ttl, on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(_disconnected(receive))
        client_left = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            interval = max(0.05, self.ttl / 3)
            while True:
                try:
                    ttl = self.member.keepalive(self.lease_id)
                except (NotLeaderError, Unavailable, KvError) as error:
                    data = json.dumps({"error": type(error).__name__, "message": str(error)})
                    await send(
                        {
                            "type": "http.response.body",
                            "body": f"event: error\ndata: {data}\n\n".encode(),
                            "more_body": False,
                        }
                    )
                    return
                frame = json.dumps({"id": self.lease_id, "ttl": ttl})
                await send(
                    {
                        "type": "http.response.body",
                        "body": f"event: keepalive\ndata: {frame}\n\n".encode(),
                        "more_body": True,
                    }
                )
                done, _ = await asyncio.wait({gone}, timeout=interval)
                if done:
                    client_left = True
                    return
        except OSError:  # the client went away mid-write
            client_left = True
        finally:
            if not gone.done():
                gone.cancel()
            if client_left:
                self.on_close()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


__all__ = ["KeepAliveStream", "router"]
