"""`AclGuard`: the one ASGI middleware that enforces ACLs around a member's whole API.

Theory of operation. The guard sits outside the member's front (`ApiFront`), so the fast
path, FastAPI and mounted apps are all behind it. For each HTTP request it asks
`routes.need_for` what the request needs, then:

1. `PUBLIC` passes; `ACL_API` is answered here (`acl_api.py`); a `Refusal` is 400.
2. The token comes from `Authorization: Bearer <token>`. None, or one the store does not
   know: 401. Checked before anything else, so an unauthenticated caller learns nothing
   about keys, routes or bodies.
3. The need is checked against the token's grants (policy.py); missing: 403 naming the
   permission (`{"error": "permission_denied", "permission": "key:write:/app/x"}`).
   A transaction's body is read first (it says which keys it touches), judged, and
   replayed unchanged to the API, so the API sees exactly the bytes that were judged.
4. Only then does the request reach the API. A refused request reaches nothing: no
   write is half-applied, no watch is opened.
5. A watch let through stays registered with its token (streams.py) while it is open;
   once the token is deleted or stops granting the watch's needs, the guard cuts it:
   the API is told the client went away (so it unsubscribes), and the client gets a
   last `event: error` (`token_revoked`) before the response ends.

Tokens are read from this member's own copy of the store (a token made a moment ago on
the leader may take a replication round-trip to work on a follower). Every answer is a
JSON error of the API's shape; nothing here can answer 500 for a bad request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .acl_api import AclApi, MemberView, respond
from .policy import Need, allows
from .routes import ACL_API, PUBLIC, TXN, Refusal, is_watch, need_for, txn_needs
from .streams import OpenStreams
from .tokens import Identity, TokenStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 2 * 1024 * 1024  # the API's own limit (docs/api.md)


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it is over `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over `body` once, then whatever the client sends next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def denied(need: Need) -> tuple[int, dict[str, Any]]:
    permission = need.describe()
    return 403, {
        "error": "permission_denied",
        "message": f"this token does not grant {permission}",
        "permission": permission,
    }


class AclGuard:
    def __init__(self, app: ASGIApp, member: MemberView) -> None:
        self.app = app
        self.tokens = TokenStore(member.kv.get)
        self.api = AclApi(member, self.tokens)
        self.streams = OpenStreams(self.tokens)

    def authenticate(self, scope: Scope) -> Identity | None:
        secret = bearer_token(scope)
        return self.tokens.resolve(secret) if secret is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = need_for(scope["method"], scope["path"], scope.get("query_string", b""))
        if decision is PUBLIC:
            await self.app(scope, receive, send)
            return
        if decision is ACL_API:
            await self.api(scope, receive, send, self.authenticate(scope))
            return
        if isinstance(decision, Refusal):
            await respond(send, 400, {"error": "invalid_request", "message": decision.message})
            return
        identity = self.authenticate(scope)
        if identity is None:
            await respond(send, 401, unauthorized(scope))
            return
        if decision is TXN:
            body = await read_body(receive, MAX_BODY_BYTES)
            if body is None:
                limit = f"the request body is over {MAX_BODY_BYTES} bytes"
                await respond(send, 413, {"error": "body_too_large", "message": limit})
                return
            try:
                needs = txn_needs(body)
            except ValueError as error:
                await respond(send, 400, {"error": "invalid_request", "message": str(error)})
                return
            receive = replay(body, receive)
        elif isinstance(decision, tuple):
            needs = decision  # a watch of a prefix set: each one, or none at all
        else:
            assert isinstance(decision, Need)
            needs = (decision,)
        for need in needs:
            if not allows(identity.grants, need):
                await respond(send, *denied(need))
                return
        secret = bearer_token(scope)
        if secret is not None and is_watch(scope["method"], scope["path"]):
            await self._stream(scope, receive, send, secret, needs)
            return
        await self.app(scope, receive, send)

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, secret: str, needs: tuple[Need, ...]
    ) -> None:
        """Serve a watch, cutting it when its token stops granting `needs`."""
        started = finished = False
        with self.streams.open(secret, needs) as cut:

            async def watched_receive() -> Message:
                # The API's stream listens here for the client going away: a cut is that.
                if cut.is_set():
                    return {"type": "http.disconnect"}
                incoming = asyncio.ensure_future(receive())
                revoked = asyncio.ensure_future(cut.wait())
                await asyncio.wait((incoming, revoked), return_when=asyncio.FIRST_COMPLETED)
                revoked.cancel()
                if incoming.done():
                    return incoming.result()
                incoming.cancel()
                return {"type": "http.disconnect"}

            async def watched_send(message: Message) -> None:
                nonlocal started, finished
                if cut.is_set() and started:
                    return  # the stream is being cut: nothing more of the API's
                if message["type"] == "http.response.start":
                    started = True
                elif message["type"] == "http.response.body":
                    finished = not message.get("more_body", False)
                await send(message)

            await self.app(scope, watched_receive, watched_send)
            if cut.is_set() and started and not finished:
                await send({"type": "http.response.body", "body": REVOKED, "more_body": False})

    async def aclose(self) -> None:
        await self.streams.aclose()
        await self.api.aclose()


_REVOKED_MESSAGE = "the token of this watch was deleted or no longer grants it"
REVOKED = (
    "event: error\ndata: "
    + json.dumps({"error": "token_revoked", "message": _REVOKED_MESSAGE})
    + "\n\n"
).encode()


def unauthorized(scope: Scope) -> dict[str, Any]:
    if bearer_token(scope) is None:
        message = "this member enforces ACLs: send Authorization: Bearer <token>"
        return {"error": "unauthorized", "message": message}
    return {"error": "unauthorized", "message": "unknown token"}


def guard_api(front: ASGIApp, member: MemberView, enabled: bool) -> ASGIApp:
    """`front` behind an `AclGuard` when ACLs are `enabled`, else `front` itself (so a
    member without `--acl` pays nothing)."""
    return AclGuard(front, member) if enabled else front


__all__ = ["AclGuard", "bearer_token", "guard_api"]
