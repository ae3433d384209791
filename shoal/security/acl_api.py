"""The ACL endpoints under `/api/v1/acl/`: bootstrap, policies and tokens.

Bootstrap (`POST /api/v1/acl/bootstrap`, no token, once per cluster), policies
(`PUT|GET|DELETE /api/v1/acl/policies[/{name}]`) and tokens (`POST|GET /api/v1/acl/tokens`,
`DELETE /api/v1/acl/tokens/{accessor}`, `GET /api/v1/acl/token/self`); reads need
`acl:read`, writes `acl:write` (docs/security.md has the table). A token's secret is in
the answer that creates it and nowhere else.

Writes are proposed on the leader; a follower forwards the request (with its token) to
the leader, once, and answers only once it has applied the write itself (the leader
says which revision to wait for), so a token made through a follower works on it at once.
Reads answer from this member's copy of the store. The bootstrap is a
transaction guarded by `/_shoal/acl/bootstrap` not existing, so two racing bootstraps
cannot both succeed; its secret is random unless the body chooses one (`{"token": ...}`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import httpx

from ..kv import (
    Command,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    KeyValue,
    Put,
    RangeResult,
    Result,
    Txn,
    TxnResult,
    prefix_end,
)
from .policy import BUILTIN, GLOBAL_MANAGEMENT, Need, PolicyError, allows, parse_policy
from .tls import MemberTls, outbound_verify
from .tokens import (
    BOOTSTRAP_KEY,
    MEMBER_SECRET_KEY,
    POLICIES_PREFIX,
    TOKENS_PREFIX,
    Identity,
    TokenStore,
    digest,
    new_accessor,
    new_secret,
    policy_key,
    token_key,
    token_record,
)

Scope = MutableMapping[str, Any]
# What a caller-chosen bootstrap secret may be: long enough not to be guessed, and only
# characters a `Bearer` header carries as they are.
CHOSEN_SECRET = re.compile(r"[A-Za-z0-9._~+/=-]{32,256}")
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FORWARDED = "x-shoal-forwarded"
REVISION = "x-shoal-acl-revision"  # the leader's applied revision, on a forwarded write
APPLY_POLL = 0.005  # seconds between looks at this member's applied revision
MAX_BODY = 256 * 1024


class StoreView(Protocol):
    @property
    def revision(self) -> int: ...

    def get(self, key: bytes, revision: int | None = None) -> KeyValue | None: ...

    def range(
        self,
        key: bytes,
        range_end: bytes | None = None,
        limit: int = 0,
        revision: int | None = None,
    ) -> RangeResult: ...


class ConfigView(Protocol):
    @property
    def tls(self) -> MemberTls | None: ...

    @property
    def request_timeout(self) -> float: ...


class MemberView(Protocol):
    """What the guard needs of a member (shoal.node.member.Member has all of it)."""

    @property
    def kv(self) -> StoreView: ...

    @property
    def config(self) -> ConfigView: ...

    @property
    def name(self) -> str: ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader(self) -> str | None: ...

    def member_url(self, name: str) -> str | None: ...

    async def propose(self, command: Command) -> Result: ...


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def respond(
    send: Send, status: int, body: dict[str, Any], extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


ACL_READ, ACL_WRITE = Need("acl", "read"), Need("acl", "write")
_POLICY = re.compile(r"/api/v1/acl/policies/(?P<name>[^/]+)")
_TOKEN = re.compile(r"/api/v1/acl/tokens/(?P<accessor>[^/]+)")


class AclApi:
    def __init__(self, member: MemberView, tokens: TokenStore) -> None:
        self.member = member
        self.tokens = tokens
        self._http: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, identity: Identity | None
    ) -> None:
        method, path = scope["method"], scope["path"]
        try:
            body = await self._body(receive) if method in ("PUT", "POST") else b""
            if method == "POST" and path == "/api/v1/acl/bootstrap":
                status, answer = await self._write(scope, body, self._bootstrap)
            else:
                status, answer = await self._managed(scope, body, method, path, identity)
        except ApiError as error:
            status, answer = error.status, {"error": error.code, "message": error.message}
        extra: tuple[tuple[bytes, bytes], ...] = ()
        if method != "GET" and _header(scope, FORWARDED.encode()) is not None:
            # For the follower that forwarded it: the revision it must have applied before
            # it answers its client (see _forward).
            extra = ((REVISION.encode(), str(self.member.kv.revision).encode()),)
        await respond(send, status, answer, extra)

    async def _managed(
        self, scope: Scope, body: bytes, method: str, path: str, identity: Identity | None
    ) -> tuple[int, dict[str, Any]]:
        if identity is None:
            if any(name == b"authorization" for name, _ in scope.get("headers", ())):
                raise ApiError(401, "unauthorized", "unknown token")  # as the guard says
            raise ApiError(401, "unauthorized", "the ACL API needs Authorization: Bearer <token>")
        if method == "GET" and path == "/api/v1/acl/token/self":
            return 200, _token_view(
                identity.accessor, list(identity.policies), identity.description
            )
        need = ACL_READ if method == "GET" else ACL_WRITE
        if not allows(identity.grants, need):
            p = need.describe()
            raise ApiError(403, "permission_denied", f"this token does not grant {p}")
        if path == "/api/v1/acl/policies" and method == "GET":
            return 200, {"policies": self._policies()}
        if path == "/api/v1/acl/tokens" and method == "GET":
            return 200, {"tokens": self._token_list()}
        if path == "/api/v1/acl/tokens" and method == "POST":
            return await self._write(scope, body, self._create_token)
        if match := _POLICY.fullmatch(path):
            name = match["name"]
            if method == "GET":
                policy = self.tokens.policy(name)
                if policy is None:
                    raise ApiError(404, "not_found", f"no policy {name!r}")
                return 200, _policy_view(policy.name, policy.description, list(policy.rules))
            if method == "PUT":
                return await self._write(scope, body, lambda b: self._put_policy(name, b))
            if method == "DELETE":
                return await self._write(scope, body, lambda _: self._delete_policy(name))
        if (match := _TOKEN.fullmatch(path)) and method == "DELETE":
            accessor = match["accessor"]
            return await self._write(scope, body, lambda _: self._delete_token(accessor))
        raise ApiError(404, "not_found", f"no ACL route {method} {path}")

    # -- reads ----------------------------------------------------------------------------

    def _scan(self, prefix: str) -> list[KeyValue]:
        start = prefix.encode()
        return list(self.member.kv.range(start, prefix_end(start)).kvs)

    def _policies(self) -> list[dict[str, Any]]:
        views = [_policy_view(GLOBAL_MANAGEMENT, BUILTIN[GLOBAL_MANAGEMENT].description, None)]
        for kv in self._scan(POLICIES_PREFIX):
            name = kv.key.decode()[len(POLICIES_PREFIX) :]
            policy = self.tokens.policy(name)
            if policy is not None:
                views.append(_policy_view(name, policy.description, list(policy.rules)))
        return views

    def _token_records(self) -> list[tuple[KeyValue, dict[str, Any]]]:
        out = []
        for kv in self._scan(TOKENS_PREFIX):
            try:
                record = json.loads(kv.value)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append((kv, record))
        return out

    def _token_list(self) -> list[dict[str, Any]]:
        return [
            _token_view(r.get("accessor"), r.get("policies", []), r.get("description", ""))
            for _, r in self._token_records()
        ]

    # -- writes ---------------------------------------------------------------------------

    async def _body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(
                    413, "body_too_large", f"an ACL request body is at most {MAX_BODY} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _write(
        self,
        scope: Scope,
        body: bytes,
        act: Callable[[bytes], Awaitable[tuple[int, dict[str, Any]]]],
    ) -> tuple[int, dict[str, Any]]:
        if self.member.is_leader:
            return await act(body)
        return await self._forward(scope, body)

    async def _forward(self, scope: Scope, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = dict(scope.get("headers", ()))
        if headers.get(FORWARDED.encode()):
            raise ApiError(503, "no_leader", "forwarded to a member that is not the leader")
        leader = self.member.leader
        url = self.member.member_url(leader) if leader else None
        if url is None:
            raise ApiError(503, "no_leader", "no leader known yet; retry shortly")
        if self._http is None:
            config = self.member.config
            self._http = httpx.AsyncClient(
                timeout=config.request_timeout + 1, verify=outbound_verify(config.tls)
            )
        forward = {"content-type": "application/json", FORWARDED: self.member.name}
        if b"authorization" in headers:
            forward["authorization"] = headers[b"authorization"].decode("latin-1")
        try:
            upstream = await self._http.request(
                scope["method"], url + scope["path"], content=body, headers=forward
            )
            answer = upstream.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ApiError(503, "unavailable", f"leader {leader} unreachable: {error}") from error
        if upstream.is_success:
            await self._caught_up(upstream.headers.get(REVISION))
        return upstream.status_code, answer if isinstance(answer, dict) else {"answer": answer}

    async def _caught_up(self, revision: str | None) -> None:
        """Read your writes on a follower: answer a forwarded ACL write only once this
        member has applied it, so a token just made (or deleted) through this member
        works (or stops working) here as soon as the client has its answer. Bounded by
        the request timeout: past it the write is still committed, only not yet here.
        ACL writes are rare, so a short poll is cheaper than a hook into the apply loop."""
        if revision is None or not revision.isdigit():
            return
        target = int(revision)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.member.config.request_timeout
        while self.member.kv.revision < target and loop.time() < deadline:
            await asyncio.sleep(APPLY_POLL)

    async def _propose(self, command: Command) -> Result:
        try:
            return await self.member.propose(command)
        except Exception as error:  # not leader any more, no quorum, timeout: retry
            raise ApiError(503, "unavailable", f"the write did not commit: {error}") from error

    async def _bootstrap(self, body: bytes) -> tuple[int, dict[str, Any]]:
        secret = _chosen_secret(_json(body)) or new_secret()
        accessor, member_secret = new_accessor(), new_secret()
        record = token_record(secret, accessor, [GLOBAL_MANAGEMENT], "bootstrap token")
        command = Txn(
            compares=(
                Compare(
                    key=BOOTSTRAP_KEY.encode(),
                    target=CompareTarget.VERSION,
                    op=CompareOp.EQ,
                    value=0,
                ),
            ),
            success=(
                Put(key=BOOTSTRAP_KEY.encode(), value=accessor.encode()),
                Put(key=token_key(digest(secret)), value=record),
                Put(key=MEMBER_SECRET_KEY.encode(), value=member_secret.encode()),
            ),
        )
        result = await self._propose(command)
        if not (isinstance(result, TxnResult) and result.succeeded):
            raise ApiError(409, "already_bootstrapped", "the ACL bootstrap token was made already")
        return 200, {"token": secret, "accessor": accessor, "policies": [GLOBAL_MANAGEMENT]}

    async def _put_policy(self, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
        document = _json(body)
        try:
            policy = parse_policy(name, document)
        except PolicyError as error:
            raise ApiError(400, "invalid_policy", str(error)) from None
        stored = {"rules": list(policy.rules), "description": policy.description}
        result = await self._propose(Put(key=policy_key(name), value=_dumps(stored)))
        return 200, {"name": name, "revision": getattr(result, "revision", 0)}

    async def _delete_policy(self, name: str) -> tuple[int, dict[str, Any]]:
        if name in BUILTIN:
            raise ApiError(400, "invalid_policy", f"policy {name!r} is built in")
        if self.member.kv.get(policy_key(name)) is None:
            raise ApiError(404, "not_found", f"no policy {name!r}")
        await self._propose(Delete(key=policy_key(name)))
        return 200, {"deleted": True}

    async def _create_token(self, body: bytes) -> tuple[int, dict[str, Any]]:
        document = _json(body)
        unknown = sorted(set(document) - {"policies", "description"})
        if unknown:
            raise ApiError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
        policies = document.get("policies")
        if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
            raise ApiError(400, "invalid_request", "policies: must be a list of policy names")
        missing = [p for p in policies if self.tokens.policy(p) is None]
        if missing:
            raise ApiError(400, "unknown_policy", f"no such policy: {', '.join(missing)}")
        description = document.get("description", "")
        if not isinstance(description, str) or len(description) > 1024:
            raise ApiError(400, "invalid_request", "description: a string of up to 1024 chars")
        secret, accessor = new_secret(), new_accessor()
        record = token_record(secret, accessor, policies, description)
        await self._propose(Put(key=token_key(digest(secret)), value=record))
        return 200, {"token": secret, **_token_view(accessor, policies, description)}

    async def _delete_token(self, accessor: str) -> tuple[int, dict[str, Any]]:
        for kv, record in self._token_records():
            if record.get("accessor") == accessor:
                await self._propose(Delete(key=kv.key))
                return 200, {"deleted": True}
        raise ApiError(404, "not_found", f"no token with accessor {accessor!r}")


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope.get("headers", ()) if key == name), None)


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError as error:
        raise ApiError(400, "invalid_request", f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return document


def _chosen_secret(document: dict[str, Any]) -> str | None:
    """The bootstrap secret the caller chose (`{"token": ...}`, as Consul's bootstrap
    takes one), so a deployment can hand out its management token before the cluster
    exists (`shoal up`'s `security.token`). Refused unless it is hard to guess."""
    if set(document) - {"token"}:
        raise ApiError(400, "invalid_request", 'the bootstrap body takes only "token"')
    secret = document.get("token")
    if secret is None:
        return None
    if not isinstance(secret, str) or not CHOSEN_SECRET.fullmatch(secret):
        raise ApiError(
            400,
            "invalid_token",
            "a chosen bootstrap token is 32 to 256 characters of letters, digits and "
            "-._~+/= (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)",
        )
    return secret


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _token_view(accessor: object, policies: list[Any], description: object) -> dict[str, Any]:
    return {"accessor": accessor, "policies": policies, "description": description}


def _policy_view(name: str, description: str, rules: list[Any] | None) -> dict[str, Any]:
    return {"name": name, "description": description, "rules": rules}


__all__ = ["AclApi", "MemberView", "respond"]
