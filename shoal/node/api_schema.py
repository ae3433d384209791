"""The OpenAPI description of `/api/v1`: every operation's real statuses and typed bodies.

Why: FastAPI documents each route as answering 200 (untyped) or 422, while the API
answers 422 never and 400/404/409/410/413/503 with `{"error", "message"}` -- a client
generated from the schema, or a schema-based fuzzer, could not trust it. Here one table
(`OPERATIONS`) says, per `(method, path)`, what a success looks like (a response model,
or a media type for the SSE streams and `/metrics`) and which error statuses it has;
`install(app)` rewrites the generated schema's responses from it. A route missing from
the table makes schema generation fail, so no operation goes undocumented.

The models below document answers; they never validate them at run time (handlers and
the fast path build their JSON directly). `tests/fuzz` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

# -- the error body ------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer. Some errors add fields (`details`, `field`, `revision`,
    `compact_revision`, `line`, `column`, `expected`, `current`, ...)."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="a stable code, e.g. invalid_request, key_not_found")
    message: str = Field(description="what is wrong and where, for people")


STATUS_TEXT = {
    307: "Served by the leader: follow the Location header",
    400: "Malformed request: bad JSON, a wrong type, a bad parameter (named)",
    404: "No such key, lease, instance, member, item or route",
    409: "Refused in the current state (membership, transfer, a version mismatch)",
    410: "Compacted history: re-list, then watch from the list's revision + 1",
    413: "A limit: body over 2 MiB, key, value, txn size or config content",
    503: "No leader, not committed in time (it may still commit), or too many connections",
}

# -- success bodies ------------------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class KeyValueBody(_Doc):
    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int | None


class KeyRead(KeyValueBody):
    revision: int


class PutAnswer(_Doc):
    revision: int
    prev_kv: KeyValueBody | None = None


class DeleteAnswer(_Doc):
    revision: int
    deleted: int


class ListAnswer(_Doc):
    kvs: list[KeyValueBody]
    more: bool
    next_after: str | None
    count: int
    revision: int


class TxnPutAnswer(_Doc):
    revision: int


class TxnDeleteAnswer(_Doc):
    deleted: int


class TxnGetAnswer(_Doc):
    kvs: list[KeyValueBody]
    more: bool


class TxnResponseBody(_Doc):
    put: TxnPutAnswer | None = None
    delete: TxnDeleteAnswer | None = None
    get: TxnGetAnswer | None = None


class TxnAnswer(_Doc):
    succeeded: bool
    revision: int
    responses: list[TxnResponseBody]


class CompactAnswer(_Doc):
    compact_revision: int


class LeaseAnswer(_Doc):
    id: int
    ttl: int


class LeaseRevokeAnswer(_Doc):
    revision: int
    deleted: list[str]


class LeaseTtlAnswer(_Doc):
    id: int
    granted_ttl: int
    remaining: float
    keys: list[str]


class ClusterMemberBody(_Doc):
    name: str
    voter: bool
    leader: bool
    client_url: str | None
    peer_addr: str | None
    match_index: int | None


class ClusterAnswer(_Doc):
    member: str
    leader: str | None
    term: int
    role: str
    commit_index: int
    applied_index: int
    revision: int
    members: list[ClusterMemberBody]


class MemberChangeAnswer(_Doc):
    index: int
    name: str
    learner: bool | None = None


class RevisionAnswer(_Doc):
    revision: int


class TransferAnswer(_Doc):
    transferring_to: str


class HealthzAnswer(_Doc):
    status: str
    member: str


class ReadyzAnswer(_Doc):
    status: str
    leader: str


class CheckLast(_Doc):
    ok: bool
    reason: str
    at: float


class OwnedCheck(_Doc):
    key: str
    service: str
    id: str
    type: str
    target: str
    interval: float
    stored_status: str
    status: str
    successes: int
    failures: int
    probes: int
    owned_since: float
    last: CheckLast | None


class ChecksAnswer(_Doc):
    member: str
    leader: str | None
    checkers: list[str] | None
    count: int
    checks: list[OwnedCheck]


class HealthBody(_Doc):
    status: str
    reason: str
    since: float


class InstanceDoc(_Doc):
    service: str
    id: str
    address: str
    port: int
    weight: float
    zone: str
    tags: list[str]
    metadata: dict[str, str]
    version: str
    check: dict[str, Any] | None
    deregister_after: float | None
    registered_at: float
    health: HealthBody
    lease: int | None


class RegisteredAnswer(InstanceDoc):
    revision: int


class DiscoveredInstance(InstanceDoc):
    mod_revision: int


class DiscoveryAnswer(_Doc):
    service: str
    revision: int
    protected: bool
    protect_threshold: float
    total: int
    healthy: int
    instances: list[DiscoveredInstance]


class HeartbeatAnswer(_Doc):
    id: str
    lease: int
    ttl: int


class ServiceSummaryBody(_Doc):
    name: str
    instances: int
    healthy: int


class ServicesAnswer(_Doc):
    services: list[ServiceSummaryBody]
    revision: int


class SettingsAnswer(_Doc):
    protect_threshold: float
    revision: int | None = None


class PublishAnswer(_Doc):
    version: int
    sha256: str
    revision: int


class DeletedItemAnswer(_Doc):
    deleted: bool
    revision: int


class DroppedBetaAnswer(_Doc):
    dropped: bool
    revision: int


class BetaSummary(_Doc):
    format: str
    selector: dict[str, str]
    author: str
    time: float
    message: str
    sha256: str
    base: int
    size: int


class BetaAnswer(_Doc):
    beta: BetaSummary
    revision: int


class EffectiveAnswer(_Doc):
    namespace: str
    name: str
    version: int
    beta: bool
    content: str
    format: str
    sha256: str
    author: str
    time: float
    message: str
    revision: int


class ItemSummary(_Doc):
    namespace: str
    name: str
    version: int
    format: str
    updated: float
    beta: bool


class ItemsAnswer(_Doc):
    items: list[ItemSummary]
    revision: int


class VersionSummary(_Doc):
    number: int
    format: str
    author: str
    time: float
    message: str
    sha256: str
    kind: str
    source: int | None
    size: int


class HistoryAnswer(_Doc):
    namespace: str
    name: str
    current: int
    versions: list[VersionSummary]
    beta: BetaSummary | None
    revision: int


class VersionAnswer(VersionSummary):
    namespace: str
    name: str
    content: str


class DiffAnswer(_Doc):
    from_: int = Field(alias="from")
    to: int
    diff: str


# -- the table -----------------------------------------------------------------------------

SSE = "text/event-stream"
METRICS = "text/plain"


@dataclass(frozen=True, slots=True)
class Operation:
    """What one operation answers: `ok` (a model, or a media type whose body is text)
    and its error statuses (400, 413 and 503 apply to every operation)."""

    ok: type[BaseModel] | str
    errors: tuple[int, ...] = ()


_KV = "/api/v1/kv/{key}"
_LEASE = "/api/v1/leases/{lease_id}"
_MEMBER = "/api/v1/cluster/members/{name}"
_INSTANCE = "/api/v1/services/{service}/instances/{instance_id}"
_SERVICE = "/api/v1/services/{service}"
_ITEM = "/api/v1/config/{namespace}/{name}"

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("PUT", _KV): Operation(PutAnswer, (404,)),
    ("GET", _KV): Operation(KeyRead, (404, 410)),
    ("DELETE", _KV): Operation(DeleteAnswer, (404,)),
    ("GET", "/api/v1/kv"): Operation(ListAnswer, (410,)),
    ("DELETE", "/api/v1/kv"): Operation(DeleteAnswer),
    ("POST", "/api/v1/txn"): Operation(TxnAnswer, (404,)),
    ("POST", "/api/v1/compact"): Operation(CompactAnswer, (410,)),
    ("POST", "/api/v1/leases"): Operation(LeaseAnswer),
    ("DELETE", _LEASE): Operation(LeaseRevokeAnswer, (404,)),
    ("GET", _LEASE): Operation(LeaseTtlAnswer, (404,)),
    ("POST", _LEASE + "/keepalive"): Operation(LeaseAnswer, (404,)),
    ("GET", "/api/v1/watch"): Operation(SSE, (410,)),
    ("GET", "/api/v1/cluster"): Operation(ClusterAnswer),
    ("POST", "/api/v1/cluster/members"): Operation(MemberChangeAnswer, (409,)),
    ("PUT", _MEMBER + "/address"): Operation(RevisionAnswer, (404,)),
    ("POST", _MEMBER + "/promote"): Operation(MemberChangeAnswer, (404, 409)),
    ("DELETE", _MEMBER): Operation(MemberChangeAnswer, (404, 409)),
    ("POST", "/api/v1/cluster/transfer"): Operation(TransferAnswer, (409,)),
    ("GET", "/healthz"): Operation(HealthzAnswer),
    ("GET", "/readyz"): Operation(ReadyzAnswer),
    ("GET", "/metrics"): Operation(METRICS),
    ("GET", "/api/v1/health/checks"): Operation(ChecksAnswer),
    ("PUT", _INSTANCE): Operation(RegisteredAnswer, (404,)),
    ("DELETE", _INSTANCE): Operation(DeleteAnswer, (404,)),
    ("PUT", _INSTANCE + "/heartbeat"): Operation(HeartbeatAnswer, (404,)),
    ("GET", "/api/v1/services"): Operation(ServicesAnswer),
    ("GET", _SERVICE + "/instances"): Operation(DiscoveryAnswer, (404,)),
    ("GET", _SERVICE + "/settings"): Operation(SettingsAnswer, (404,)),
    ("PUT", _SERVICE + "/settings"): Operation(SettingsAnswer, (404,)),
    ("GET", _SERVICE + "/watch"): Operation(SSE, (404, 410)),
    ("GET", _LEASE + "/keepalive-stream"): Operation(SSE, (307, 404)),
    ("PUT", _ITEM): Operation(PublishAnswer, (404, 409)),
    ("DELETE", _ITEM): Operation(DeletedItemAnswer, (404, 409)),
    ("GET", _ITEM): Operation(EffectiveAnswer, (404,)),
    ("POST", _ITEM + "/rollback"): Operation(PublishAnswer, (404, 409)),
    ("PUT", _ITEM + "/beta"): Operation(BetaAnswer, (404, 409)),
    ("DELETE", _ITEM + "/beta"): Operation(DroppedBetaAnswer, (404, 409)),
    ("POST", _ITEM + "/beta/promote"): Operation(PublishAnswer, (404, 409)),
    ("GET", "/api/v1/config"): Operation(ItemsAnswer),
    ("GET", _ITEM + "/history"): Operation(HistoryAnswer, (404,)),
    ("GET", _ITEM + "/versions/{number}"): Operation(VersionAnswer, (404,)),
    ("GET", _ITEM + "/diff"): Operation(DiffAnswer, (404,)),
    ("GET", _ITEM + "/watch"): Operation(SSE, (404, 410)),
}
EVERYWHERE = (400, 413, 503)
_REF = "#/components/schemas/{model}"


def _responses(op: Operation) -> dict[str, Any]:
    if isinstance(op.ok, str):
        ok: dict[str, Any] = {
            "description": "Server-Sent Events" if op.ok == SSE else "Prometheus text format",
            "content": {op.ok: {"schema": {"type": "string"}}},
        }
    else:
        schema = {"$ref": _REF.format(model=op.ok.__name__)}
        ok = {
            "description": (op.ok.__doc__ or "Success").strip().splitlines()[0],
            "content": {"application/json": {"schema": schema}},
        }
    out: dict[str, Any] = {"200": ok}
    error = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
    for status in sorted(set(op.errors) | set(EVERYWHERE)):
        if status == 307:
            out["307"] = {
                "description": STATUS_TEXT[307],
                "headers": {"location": {"schema": {"type": "string"}}},
            }
        else:
            out[str(status)] = {"description": STATUS_TEXT[status], "content": error}
    return out


def _model_schemas() -> dict[str, Any]:
    models = {op.ok for op in OPERATIONS.values() if not isinstance(op.ok, str)} | {ErrorBody}
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema(
        [(m, "serialization") for m in ordered], ref_template=_REF, by_alias=True
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


def build_schema(app: FastAPI) -> dict[str, Any]:
    """The generated schema with every operation's responses taken from `OPERATIONS`."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_model_schemas())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            key = (method.upper(), path)
            if key not in OPERATIONS:
                raise KeyError(f"{method.upper()} {path} is not described in api_schema.py")
            operation["responses"] = _responses(OPERATIONS[key])
    return schema


def install(app: FastAPI) -> None:
    """Serve `build_schema(app)` (built once, on first request) at the app's openapi URL."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["OPERATIONS", "ErrorBody", "Operation", "build_schema", "install"]
