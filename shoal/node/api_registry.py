"""The registry's HTTP endpoints, `/api/v1/services/...`, and the lease keep-alive stream.

Theory of operation. An instance is one key, `/registry/services/{service}/instances/{id}`,
whose JSON value is `shoal.registry.Instance`; everything here maps requests onto KV
commands through the member, the same way the KV API does:

- Writes (register, deregister, heartbeat, settings) run on the leader; a follower
  forwards them (`Routing.leader_only`). A ttl check grants a lease and attaches the
  instance key to it, so the instance vanishes when the lease expires.
- Reads (`GET services`, `GET instances`) are linearizable by default (`Routing.barrier`)
  and report the store revision they reflect; watch from `revision + 1` to miss nothing.
  They are answered from the member's `RegistryCache` (registry_cache.py): records are
  decoded once per change, and a discovery answer is rendered once per change.
- Heartbeats, registrations and discovery requests that are well formed are answered by
  the ASGI fast path (fastpath.py) with the functions shared from here
  (`register_instance`, `register_fields`, `parse_discovery_query`, the cache); the
  handlers below answer the rest (followers forwarding, every error message).
- `GET .../watch` is the KV watch (`member.hub`) of one service's instance prefix, with
  events rendered as instances: resumable with `start_revision` (DESIGN.md decision 5).
- A registration or heartbeat first waits until a new leader has applied what was
  committed before its term (`Member.caught_up`): it reads the previous record.

The keep-alive stream an instance's lease may hang on is in api_leases.py; active
HTTP/TCP checks run in health.py, whose lifetime is the member's (lifespan.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..kv import (
    Delete,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    KvError,
    LeaseGrant,
    LeaseNotFound,
    Put,
    PutResult,
    WatchFilter,
)
from ..registry import (
    SERVICES_PREFIX,
    Instance,
    InstanceFilter,
    RegistryError,
    ServiceSettings,
    check_name,
    instance_key,
    instances_prefix,
    parse_filter,
    parse_instance_key,
    registration,
    settings_key,
)
from .api_errors import ApiError, kv_error
from .api_models import MAX_ID, STRICT
from .member import Member
from .registry_cache import RegistryCache, instance_json, settings
from .rendering import watch_stream
from .routing import Consistency, Routing


class InstanceBody(BaseModel):
    """A registration. `check` and durations are validated by `shoal.registry`; types are
    strict (`"port": true` is not port 1)."""

    model_config = STRICT

    address: str
    port: int
    weight: float = 1.0
    zone: str = ""
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    version: str = ""
    check: dict[str, Any] | None = None
    deregister_after: str | float | None = None
    status: Literal["passing", "warning", "critical"] | None = None
    lease: int | None = Field(default=None, ge=1, le=MAX_ID)  # e.g. a keep-alive stream's


_BODY_FIELDS = frozenset(InstanceBody.model_fields)


class SettingsBody(BaseModel):
    model_config = STRICT

    protect_threshold: float = 0.0


def _invalid(error: RegistryError) -> ApiError:
    return ApiError(400, "invalid_request", str(error), field=error.field)


def _name(value: str, field: str) -> str:
    try:
        return check_name(value, field)
    except RegistryError as error:
        raise _invalid(error) from error


def instance_not_found(service: str, instance_id: str) -> ApiError:
    """The 404 of a heartbeat or deregistration of an instance that is not registered
    (shared with the fast path: one wording)."""
    return ApiError(404, "instance_not_found", f"no instance {instance_id} of {service}")


def _decode(kv: KeyValue) -> Instance | None:
    """The instance in `kv`, or None for a record this version cannot read (skipped)."""
    try:
        return Instance.decode(kv.value)
    except RegistryError:
        return None


def parse_discovery_query(
    params: list[tuple[str, str]],
) -> tuple[Consistency, InstanceFilter]:
    """The consistency and filter of a discovery request's query parameters."""
    consistency: Consistency = "linearizable"
    rest = []
    for name, value in params:
        if name == "consistency":
            if value not in ("linearizable", "stale"):
                raise ApiError(400, "invalid_request", "consistency: linearizable or stale")
            consistency = "stale" if value == "stale" else "linearizable"
        else:
            rest.append((name, value))
    try:
        return consistency, parse_filter(rest)
    except RegistryError as error:
        raise _invalid(error) from error


def _watch_frame(event: Event) -> bytes:
    key = event.kv.key.decode("utf-8", "replace")
    parsed = parse_instance_key(key)
    data: dict[str, Any] = {"type": event.type.value.lower(), "revision": event.revision}
    if parsed is not None:
        data["service"], data["id"] = parsed
    if event.type is EventType.PUT:
        instance = _decode(event.kv)
        data["instance"] = instance_json(instance, event.kv) if instance else None
    text = json.dumps(data, separators=(",", ":"))
    return f"id: {event.revision}\nevent: {data['type']}\ndata: {text}\n\n".encode()


def router(member: Member, routing: Routing, cache: RegistryCache) -> APIRouter:
    """The registry's routes over `cache`, the member's decoded-registry cache (shared
    with the fast path)."""
    api = APIRouter(tags=["registry"])
    leader_only, barrier = routing.leader_only, routing.barrier

    # -- instances --------------------------------------------------------------------

    @api.put("/api/v1/services/{service}/instances/{instance_id}")
    async def register(service: str, instance_id: str, body: InstanceBody, request: Request) -> Any:
        _name(service, "service")
        _name(instance_id, "id")
        fields = body.model_dump(exclude_unset=True)
        try:  # validate before anything is proposed: nothing half-applied
            registration(service, instance_id, fields, now=time.time())
        except RegistryError as error:
            raise _invalid(error) from error

        async def act() -> Any:
            try:
                return await register_instance(member, service, instance_id, fields)
            except RegistryError as error:  # validated above; a record read since may not be
                raise _invalid(error) from error

        return await leader_only(request, act)

    @api.put("/api/v1/services/{service}/instances/{instance_id}/heartbeat")
    async def heartbeat(service: str, instance_id: str, request: Request) -> Any:
        key = instance_key(_name(service, "service"), _name(instance_id, "id"))

        async def act() -> Any:
            await member.caught_up()  # the instance may be in a write not yet applied
            kv = member.kv.get(key.encode())
            if kv is None:
                raise instance_not_found(service, instance_id)
            if not kv.lease:
                raise ApiError(
                    400,
                    "invalid_request",
                    "the instance has no lease: register it with a ttl check",
                )
            return {"id": instance_id, "lease": kv.lease, "ttl": member.keepalive(kv.lease)}

        return await leader_only(request, act)

    @api.delete("/api/v1/services/{service}/instances/{instance_id}")
    async def deregister(service: str, instance_id: str, request: Request) -> Any:
        key = instance_key(_name(service, "service"), _name(instance_id, "id"))

        async def act() -> Any:
            result = await member.propose(Delete(key=key.encode()))
            assert isinstance(result, DeleteResult)
            if not result.deleted:
                raise instance_not_found(service, instance_id)
            return {"revision": result.revision, "deleted": result.deleted}

        return await leader_only(request, act)

    # -- discovery --------------------------------------------------------------------

    @api.get("/api/v1/services")
    async def services(consistency: Consistency = "linearizable") -> Any:
        await barrier(consistency)
        revision = member.kv.revision
        found = cache.summaries(member.kv, SERVICES_PREFIX)
        return {
            "services": [
                {"name": s.name, "instances": s.instances, "healthy": s.healthy} for s in found
            ],
            "revision": revision,
        }

    @api.get("/api/v1/services/{service}/instances")
    async def instances(service: str, request: Request) -> Any:
        # The fast path (fastpath.py) answers the well-formed ones with the same body.
        _name(service, "service")
        consistency, query = parse_discovery_query(request.query_params.multi_items())
        await barrier(consistency)
        body = cache.discovery(member.kv, service, query, member.kv.revision)
        return Response(body, media_type="application/json")

    @api.get("/api/v1/services/{service}/settings")
    async def get_settings(service: str, consistency: Consistency = "linearizable") -> Any:
        _name(service, "service")
        await barrier(consistency)
        return settings(member.kv, service).to_json()

    @api.put("/api/v1/services/{service}/settings")
    async def put_settings(service: str, body: SettingsBody, request: Request) -> Any:
        _name(service, "service")
        try:
            settings = ServiceSettings(protect_threshold=body.protect_threshold)
        except RegistryError as error:
            raise _invalid(error) from error

        async def act() -> Any:
            result = await member.propose(
                Put(key=settings_key(service).encode(), value=settings.encode())
            )
            assert isinstance(result, PutResult)
            return {"revision": result.revision, **settings.to_json()}

        return await leader_only(request, act)

    @api.get("/api/v1/services/{service}/watch")
    async def watch(service: str, start_revision: int | None = Query(None, ge=1, le=MAX_ID)) -> Any:
        prefix = instances_prefix(_name(service, "service")).encode()
        start = start_revision or member.kv.revision + 1
        try:
            watcher = member.hub.subscribe(member.kv, WatchFilter.prefix(prefix), start)
        except KvError as error:
            raise kv_error(error) from error
        return watch_stream(
            member.hub,
            member.metrics,
            watcher,
            lambda events: b"".join(_watch_frame(event) for event in events),
            f": watching {service} from revision {start}\n\n".encode(),
        )

    return api


async def register_instance(
    member: Member, service: str, instance_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """Register (or update) an instance on the leader; the JSON answer. `fields` is the
    body as `InstanceBody.model_dump(exclude_unset=True)` gives it (or `register_fields`).

    Raises NotLeaderError, RegistryError (before anything is proposed), Unavailable and
    KvError (e.g. the given lease does not exist).
    """
    if not member.is_caught_up:
        await member.caught_up()  # the previous record may be in a write not yet applied
    key = instance_key(service, instance_id).encode()
    current = member.kv.get(key)
    previous = _decode(current) if current else None
    instance = registration(service, instance_id, fields, now=time.time(), previous=previous)
    lease = fields.get("lease") or 0
    grant = None
    if not lease and instance.check is not None and instance.check.type == "ttl":
        lease, grant = _ttl_lease(member, current, instance.check.lease_ttl)
    put = Put(key=key, value=instance.encode(), lease=lease)
    if grant is None:
        result = await member.propose(put)
    else:
        # Both in one batch (one fsync, one round): gather starts the proposals in this
        # order, and the log applies the grant before the put that needs its lease.
        _, result = await asyncio.gather(member.propose(grant), member.propose(put))
    assert isinstance(result, PutResult)
    return {"revision": result.revision, "lease": lease or None, **instance.to_json()}


_STATUSES = frozenset({"passing", "warning", "critical"})
_TEXT_FIELDS = ("address", "zone", "version")


def register_fields(data: Any) -> dict[str, Any] | None:
    """The registration body (parsed JSON) as `InstanceBody.model_dump(exclude_unset=True)`
    would give it, for the plainly well-formed bodies only; None for anything else (wrong
    types, unknown fields), which FastAPI then validates and words. `registration` still
    checks every value."""
    if not isinstance(data, dict) or not data.keys() <= _BODY_FIELDS:
        return None
    if type(data.get("port")) is not int or any(
        type(data.get(name, "")) is not str for name in _TEXT_FIELDS
    ):
        return None  # (a missing address reads as "", registration says it is missing)
    weight = data.get("weight", 1.0)
    if type(weight) is not float and not (type(weight) is int and abs(weight) < 2**53):
        return None
    tags, metadata = data.get("tags", []), data.get("metadata", {})
    if type(tags) is not list or any(type(tag) is not str for tag in tags):
        return None
    if type(metadata) is not dict or any(type(v) is not str for v in metadata.values()):
        return None
    check, after = data.get("check"), data.get("deregister_after")
    if check is not None and type(check) is not dict:
        return None
    if after is not None and type(after) not in (str, float):
        return None
    status, lease = data.get("status"), data.get("lease")
    if status is not None and (type(status) is not str or status not in _STATUSES):
        return None
    if lease is not None and (type(lease) is not int or not 1 <= lease <= MAX_ID):
        return None
    return data


def _ttl_lease(member: Member, current: KeyValue | None, ttl: int) -> tuple[int, LeaseGrant | None]:
    """The lease for a ttl check: the instance's own if it still has one with this TTL
    (a re-registration must not orphan it), else a new one and the grant to propose."""
    if current is not None and current.lease:
        with contextlib.suppress(LeaseNotFound):
            state = member.kv.leases.time_to_live(current.lease, time.monotonic())
            if state.granted_ttl == ttl:
                member.keepalive(current.lease)
                return current.lease, None
    lease_id = secrets.randbits(62) + 1
    return lease_id, LeaseGrant(id=lease_id, ttl_seconds=ttl)


__all__ = [
    "InstanceBody",
    "instance_json",
    "instance_not_found",
    "parse_discovery_query",
    "register_fields",
    "register_instance",
    "router",
]
