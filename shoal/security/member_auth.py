"""`MemberAuth`: the credential a member's own HTTP calls to other members carry.

With ACLs on, a member's calls that act for no client -- health writes sent to the
leader, its address record -- carry the cluster's member secret (tokens.py), read from
the member's own store at each request, so a member learns it as soon as the bootstrap
is replicated. A request that already carries a token (a client's write forwarded to the
leader) keeps it: the leader judges the client, not the member. Without ACLs, or before
the bootstrap, nothing is added.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from .tokens import Lookup, TokenStore


class MemberAuth(httpx.Auth):
    def __init__(self, get: Lookup, enabled: bool) -> None:
        self._tokens = TokenStore(get)
        self._enabled = enabled

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._enabled and "authorization" not in request.headers:
            secret = self._tokens.member_secret()
            if secret is not None:
                request.headers["authorization"] = f"Bearer {secret}"
        yield request


__all__ = ["MemberAuth"]
