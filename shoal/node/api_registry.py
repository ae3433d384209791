"""The registry's HTTP endpoints, `/api/v1/services/...`, and the lease keep-alive stream.

Theory of operation. An instance is one key, `/registry/services/{service}/instances/{id}`,
whose JSON value is `shoal.registry.Instance`; everything here maps requests onto KV
commands through the member, the same way the KV API does:

- Writes (register, deregister, heartbeat, settings) run on the leader; a follower
  forwards them (`Routing.leader_only`). A ttl check grants a lease and attaches the
  instance key to it, so the instance vanishes when the lease expires.
- Reads (`GET services`, `GET instances`) are linearizable by default (`Routing.barrier`)
  and report the store revision they reflect; watch from `revision + 1` to miss nothing.
- `GET .../watch` is the KV watch (`member.hub`) of one service's instance prefix, with
  events rendered as instances: resumable with `start_revision` (DESIGN.md decision 5).
- `GET /api/v1/leases/{id}/keepalive-stream` is served by the leader only (others answer
  307 to it): it keeps the lease alive every ttl/3 while the client's connection stays
  open, and revokes the lease the moment the connection closes, so a process that dies
  takes its instances with it at once (decision 7). Starlette's StreamingResponse only
  notices a gone client when a write fails (ASGI spec >= 2.4), which could be ttl/3
  later, so the stream is a small ASGI response that listens for `http.disconnect`.

Active HTTP/TCP checks run in `health.py`, started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..kv import (
    Delete,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    KvError,
    LeaseGrant,
    LeaseNotFound,
    LeaseRevoke,
    Put,
    PutResult,
    WatchFilter,
    prefix_end,
)
from ..registry import (
    SERVICES_PREFIX,
    Instance,
    RegistryError,
    ServiceSettings,
    check_name,
    discover,
    instance_key,
    instances_prefix,
    parse_filter,
    parse_instance_key,
    registration,
    settings_key,
    summarize,
)
from .api import ApiError, Routing, _kv_error, watch_stream
from .api_models import MAX_ID
from .health import HealthChecker
from .member import Member, NotLeaderError, Unavailable

LeaseId = Annotated[int, Path(ge=1, le=MAX_ID)]
Consistency = Literal["linearizable", "stale"]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class InstanceBody(BaseModel):
    """A registration. `check` and durations are validated by `shoal.registry`."""

    model_config = ConfigDict(extra="forbid")

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


class SettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protect_threshold: float = 0.0


def _invalid(error: RegistryError) -> ApiError:
    return ApiError(400, "invalid_request", str(error), field=error.field)


def _name(value: str, field: str) -> str:
    try:
        return check_name(value, field)
    except RegistryError as error:
        raise _invalid(error) from error


def instance_json(instance: Instance, kv: KeyValue | None = None) -> dict[str, Any]:
    out = instance.to_json()
    if kv is not None:
        out["lease"] = kv.lease or None
        out["mod_revision"] = kv.mod_revision
    return out


def _decode(kv: KeyValue) -> Instance | None:
    """The instance in `kv`, or None for a record this version cannot read (skipped)."""
    try:
        return Instance.decode(kv.value)
    except RegistryError:
        return None


def _instances(member: Member, prefix: str) -> list[tuple[Instance, KeyValue]]:
    raw = prefix.encode()
    found = []
    for kv in member.kv.range(raw, prefix_end(raw)).kvs:
        if parse_instance_key(kv.key.decode("utf-8", "replace")) is None:
            continue
        instance = _decode(kv)
        if instance is not None:
            found.append((instance, kv))
    return found


def _settings(member: Member, service: str) -> ServiceSettings:
    kv = member.kv.get(settings_key(service).encode())
    if kv is None:
        return ServiceSettings()
    with contextlib.suppress(RegistryError, ValueError):
        return ServiceSettings.from_json(json.loads(kv.value))
    return ServiceSettings()


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


def router(member: Member, routing: Routing) -> APIRouter:
    api = APIRouter(tags=["registry"])
    leader_only, barrier = routing.leader_only, routing.barrier
    checker = HealthChecker(member)
    checker.start()  # create_app runs inside the server's loop; else the first request
    revoking: set[asyncio.Task[Any]] = set()

    # -- instances --------------------------------------------------------------------

    @api.put("/api/v1/services/{service}/instances/{instance_id}")
    async def register(service: str, instance_id: str, body: InstanceBody, request: Request) -> Any:
        checker.start()
        key = instance_key(_name(service, "service"), _name(instance_id, "id"))
        fields = body.model_dump(exclude_unset=True)
        try:  # validate before anything is proposed: nothing half-applied
            registration(service, instance_id, fields, now=time.time())
        except RegistryError as error:
            raise _invalid(error) from error

        async def act() -> Any:
            if not member.is_leader:
                raise NotLeaderError(member.leader)
            current = member.kv.get(key.encode())
            previous = _decode(current) if current else None
            instance = registration(
                service, instance_id, fields, now=time.time(), previous=previous
            )
            lease = body.lease or 0
            if not lease and instance.check is not None and instance.check.type == "ttl":
                lease = await _ttl_lease(member, current, instance.check.lease_ttl)
            result = await member.propose(
                Put(key=key.encode(), value=instance.encode(), lease=lease)
            )
            assert isinstance(result, PutResult)
            return {"revision": result.revision, "lease": lease or None, **instance.to_json()}

        return await leader_only(request, act)

    @api.put("/api/v1/services/{service}/instances/{instance_id}/heartbeat")
    async def heartbeat(service: str, instance_id: str, request: Request) -> Any:
        key = instance_key(_name(service, "service"), _name(instance_id, "id"))

        async def act() -> Any:
            if not member.is_leader:
                raise NotLeaderError(member.leader)
            kv = member.kv.get(key.encode())
            if kv is None:
                raise ApiError(404, "instance_not_found", f"no instance {instance_id} of {service}")
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
                raise ApiError(404, "instance_not_found", f"no instance {instance_id} of {service}")
            return {"revision": result.revision, "deleted": result.deleted}

        return await leader_only(request, act)

    # -- discovery --------------------------------------------------------------------

    @api.get("/api/v1/services")
    async def services(consistency: Consistency = "linearizable") -> Any:
        await barrier(consistency)
        revision = member.kv.revision
        found = summarize(i for i, _ in _instances(member, SERVICES_PREFIX))
        return {
            "services": [
                {"name": s.name, "instances": s.instances, "healthy": s.healthy} for s in found
            ],
            "revision": revision,
        }

    @api.get("/api/v1/services/{service}/instances")
    async def instances(service: str, request: Request) -> Any:
        _name(service, "service")
        params = request.query_params.multi_items()
        consistency = "linearizable"
        rest = []
        for name, value in params:
            if name == "consistency":
                if value not in ("linearizable", "stale"):
                    raise ApiError(400, "invalid_request", "consistency: linearizable or stale")
                consistency = value
            else:
                rest.append((name, value))
        try:
            query = parse_filter(rest)
        except RegistryError as error:
            raise _invalid(error) from error
        await barrier("stale" if consistency == "stale" else "linearizable")
        revision = member.kv.revision
        found = _instances(member, instances_prefix(service))
        kvs = {i.id: kv for i, kv in found}
        threshold = _settings(member, service).protect_threshold
        result = discover((i for i, _ in found), query, threshold)
        return {
            "service": service,
            "revision": revision,
            "protected": result.protected,
            "protect_threshold": threshold,
            "total": result.total,
            "healthy": result.healthy,
            "instances": [instance_json(i, kvs[i.id]) for i in result.instances],
        }

    @api.get("/api/v1/services/{service}/settings")
    async def get_settings(service: str, consistency: Consistency = "linearizable") -> Any:
        _name(service, "service")
        await barrier(consistency)
        return _settings(member, service).to_json()

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
            raise _kv_error(error) from error
        return watch_stream(
            member,
            watcher,
            lambda events: b"".join(_watch_frame(event) for event in events),
            f": watching {service} from revision {start}\n\n".encode(),
        )

    # -- the keep-alive stream --------------------------------------------------------

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
            ttl = member.keepalive(lease_id)
        except KvError as error:
            raise _kv_error(error) from error
        except Unavailable as error:
            raise ApiError(503, "unavailable", str(error)) from error
        except NotLeaderError as error:
            raise ApiError(503, "no_leader", str(error)) from error

        async def revoke() -> None:
            with contextlib.suppress(NotLeaderError, Unavailable, KvError):
                await member.propose(LeaseRevoke(id=lease_id))

        def on_close() -> None:
            if revoke_on_close:
                task = asyncio.create_task(revoke())
                revoking.add(task)
                task.add_done_callback(revoking.discard)

        return KeepAliveStream(member, lease_id, ttl, on_close)

    return api


async def _ttl_lease(member: Member, current: KeyValue | None, ttl: int) -> int:
    """The lease for a ttl check: the instance's own if it still has one with this TTL
    (a re-registration must not orphan it), else a new one."""
    if current is not None and current.lease:
        with contextlib.suppress(LeaseNotFound):
            state = member.kv.leases.time_to_live(current.lease, time.monotonic())
            if state.granted_ttl == ttl:
                member.keepalive(current.lease)
                return current.lease
    lease_id = secrets.randbits(62) + 1
    await member.propose(LeaseGrant(id=lease_id, ttl_seconds=ttl))
    return lease_id


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


__all__ = ["InstanceBody", "KeepAliveStream", "instance_json", "router"]
