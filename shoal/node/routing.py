"""Where a request runs: here if this member can serve it, else on the leader.

Theory of operation. Any member accepts any request. A write (or a lease keep-alive, a
membership change...) is attempted here; if this member is not the leader it raises
`NotLeaderError` and `Routing.leader_only` forwards the whole request to the leader,
whose answer -- status, body and content type -- is returned as is. A linearizable read
passes `Routing.barrier` (ReadIndex) and is served here.

`LeaderLink` is the one forwarding path of a member: the API's forwarding and the health
checker's status writes (health.py) both go through it. Its rules: one hop only -- every
forwarded request carries `x-shoal-forwarded`, and a member that receives one while not
leading refuses (503) rather than forwarding again, so a request never loops between
members that disagree on who leads; the leader's address comes from its member record in
the store (`/_shoal/members/{name}`); failures to reach it are a 503 `unavailable`, never
a guess. The link owns one HTTP client, closed by the member's lifespan (lifespan.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
from fastapi import Request
from fastapi.responses import Response

from ..kv import KvError
from ..raft import ProposalRejected
from ..security.member_auth import MemberAuth
from ..security.tls import outbound_verify
from .api_errors import ApiError, kv_error
from .member import Member, MembershipRefused, NotLeaderError, Unavailable

FORWARDED = "x-shoal-forwarded"
Consistency = Literal["linearizable", "stale"]


class LeaderLink:
    """Sends requests to the leader on this member's behalf (one hop, marked)."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self._client = httpx.AsyncClient(
            timeout=member.config.request_timeout + 1,
            verify=outbound_verify(member.config.tls),
            # ACLs: a member's own writes carry the member secret; a forwarded client
            # request keeps the client's token (shoal.security.member_auth).
            auth=MemberAuth(member.kv.get, member.config.acl),
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        leader: str | None,
        params: Any = None,
        content: bytes = b"",
        credentials: str | None = None,
    ) -> httpx.Response:
        """Send one request to `leader`'s client URL. Raises a 503 `ApiError` when no
        leader is known or it cannot be reached."""
        url = self.member.member_url(leader) if leader else None
        if url is None:
            raise ApiError(503, "no_leader", "no leader known yet; retry shortly")
        headers = {"content-type": "application/json", FORWARDED: self.member.name}
        if credentials:
            headers["authorization"] = credentials  # ACLs: the leader judges the client
        try:
            return await self._client.request(
                method, url + path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as error:
            raise ApiError(503, "unavailable", f"leader {leader} unreachable: {error}") from error

    async def aclose(self) -> None:
        await self._client.aclose()


class Routing:
    """Runs a request here or on the leader; shared by every router of the API."""

    def __init__(self, member: Member, link: LeaderLink) -> None:
        self.member = member
        self.link = link

    async def leader_only(self, request: Request, act: Callable[[], Awaitable[Any]]) -> Any:
        """Run `act` here if leader, else forward the whole request to the leader."""
        try:
            return await act()
        except NotLeaderError as error:
            return await self.forward(request, error.leader)
        except Unavailable as error:
            raise ApiError(503, "unavailable", str(error)) from error
        except KvError as error:
            raise kv_error(error) from error
        except (ProposalRejected, MembershipRefused) as error:
            raise ApiError(409, "rejected", str(error)) from error

    async def forward(self, request: Request, leader: str | None) -> Response:
        if request.headers.get(FORWARDED):
            raise ApiError(503, "no_leader", "forwarded to a member that is not the leader")
        upstream = await self.link.send(
            request.method,
            request.url.path,
            leader=leader,
            params=request.query_params,
            content=await request.body(),
            credentials=request.headers.get("authorization"),
        )
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


__all__ = ["FORWARDED", "Consistency", "LeaderLink", "Routing"]
