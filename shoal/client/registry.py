"""The service registry from a client: its calls, the answers as values, its streams.

    with ControlPlane(endpoints) as cp:
        cp.registry.register("users", "u1", address="10.0.0.5", port=8000)
        found = cp.registry.instances("users", healthy=True)
        for instance in found.instances: ...

Like `shoal.client.protocol`, every operation is a function returning a `Call` (what to
send, how to read the answer); `RegistryCalls` and `AsyncRegistryCalls` (reached as
`cp.registry` on either shell) are one-line wrappers that hand them to the shell. The
answers are `shoal.registry` values (`Instance`, `ServiceSummary`, `ServiceSettings`), the
same model the server validates with. Two SSE streams have cursors here: the keep-alive
stream of a lease (`KeepAliveCursor`) and a service's instance changes
(`InstanceWatchCursor`). Holding a registration alive over the keep-alive stream, with
re-registration when its lease is gone, is `shoal.client.registration`.

No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from ..registry import Instance, ServiceSettings, ServiceSummary
from .errors import NotFound, ShoalError, Unavailable, WatchClosed
from .protocol import API, Call, Consistency, Request, StreamCursor, retryable
from .sse import SseComment, SseMessage

__all__ = [
    "AsyncRegistryCalls",
    "InstanceEvent",
    "InstanceWatchCursor",
    "KeepAliveCursor",
    "Registration",
    "RegistryCalls",
    "ServiceInstances",
    "Services",
]

T = TypeVar("T")


# -- answers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """A stored registration: the instance as the server keeps it, and its lease (the
    ttl check's, to keep alive by heartbeat or the keep-alive stream)."""

    instance: Instance
    revision: int
    lease: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInstances:
    """One discovery answer: the chosen instances and how they were chosen."""

    service: str
    revision: int  # watch from revision + 1 to miss nothing
    instances: tuple[Instance, ...]
    total: int  # instances the non-health filters select
    healthy: int
    protected: bool  # the protect threshold put unhealthy instances back in
    protect_threshold: float

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "revision": self.revision,
            "protected": self.protected,
            "protect_threshold": self.protect_threshold,
            "total": self.total,
            "healthy": self.healthy,
            "instances": [i.to_json() for i in self.instances],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    services: tuple[ServiceSummary, ...]
    revision: int

    def to_json(self) -> dict[str, Any]:
        return {
            "services": [
                {"name": s.name, "instances": s.instances, "healthy": s.healthy}
                for s in self.services
            ],
            "revision": self.revision,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceEvent:
    """One change to a service's instances; `instance` is None for a delete (or a record
    this client cannot read)."""

    type: Literal["put", "delete"]
    revision: int
    service: str
    id: str
    instance: Instance | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "revision": self.revision,
            "service": self.service,
            "id": self.id,
        }
        if self.type == "put":
            out["instance"] = self.instance.to_json() if self.instance else None
        return out


# -- calls ----------------------------------------------------------------------------


def _path(service: str, instance_id: str | None = None) -> str:
    # Names are [A-Za-z0-9._-] (the server says so when they are not): nothing to quote.
    base = f"{API}/services/{service}"
    return base if instance_id is None else f"{base}/instances/{instance_id}"


def _registration(data: dict[str, Any]) -> Registration:
    return Registration(
        instance=Instance.from_json(data),
        revision=int(data["revision"]),
        lease=int(data["lease"]) if data.get("lease") else None,
    )


def register(
    service: str,
    instance_id: str,
    *,
    address: str,
    port: int,
    weight: float = 1.0,
    zone: str = "",
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    version: str = "",
    check: Mapping[str, Any] | None = None,
    deregister_after: str | float | None = None,
    status: str | None = None,
    lease: int | None = None,
) -> Call[Registration]:
    """Register (or update) an instance. Repeating it is harmless: a re-registration
    keeps the instance's health and, for a ttl check of the same TTL, its lease."""
    body: dict[str, Any] = {
        "address": address,
        "port": port,
        "weight": weight,
        "zone": zone,
        "tags": list(tags),
        "metadata": dict(metadata or {}),
        "version": version,
    }
    optional = {
        "check": dict(check) if check is not None else None,
        "deregister_after": deregister_after,
        "status": status,
        "lease": lease,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return Call(Request("PUT", _path(service, instance_id), json=body), _registration)


def _no_instance(error: ShoalError) -> int:
    if isinstance(error, NotFound) and error.code == "instance_not_found":
        return 0
    raise error


def deregister(service: str, instance_id: str, *, missing_ok: bool = False) -> Call[int]:
    """Remove an instance; the revision of the delete (0: it was not there, when
    `missing_ok` -- which makes a retried deregistration safe)."""
    request = Request("DELETE", _path(service, instance_id))
    if missing_ok:
        return Call(request, lambda d: int(d["revision"]), recover=_no_instance)
    return Call(request, lambda d: int(d["revision"]))


def heartbeat(service: str, instance_id: str) -> Call[int]:
    """Keep a ttl-checked instance alive; its TTL from now, in seconds."""
    return Call(Request("PUT", f"{_path(service, instance_id)}/heartbeat"), lambda d: int(d["ttl"]))


def _services(data: dict[str, Any]) -> Services:
    return Services(
        services=tuple(
            ServiceSummary(str(s["name"]), int(s["instances"]), int(s["healthy"]))
            for s in data["services"]
        ),
        revision=int(data["revision"]),
    )


def services(consistency: Consistency = "linearizable") -> Call[Services]:
    params = (("consistency", "stale"),) if consistency == "stale" else ()
    return Call(Request("GET", f"{API}/services", params), _services)


def _instances(data: dict[str, Any]) -> ServiceInstances:
    return ServiceInstances(
        service=str(data["service"]),
        revision=int(data["revision"]),
        instances=tuple(Instance.from_json(i) for i in data["instances"]),
        total=int(data["total"]),
        healthy=int(data["healthy"]),
        protected=bool(data["protected"]),
        protect_threshold=float(data.get("protect_threshold", 0.0)),
    )


def instances(
    service: str,
    *,
    healthy: bool = False,
    tags: Sequence[str] = (),
    zone: str | None = None,
    meta: Mapping[str, str] | None = None,
    consistency: Consistency = "linearizable",
) -> Call[ServiceInstances]:
    """Discovery: the instances of `service` that the filters select (all must hold)."""
    params: list[tuple[str, str]] = [("tag", t) for t in tags]
    if healthy:
        params.append(("healthy", "true"))
    if zone is not None:
        params.append(("zone", zone))
    params.extend((f"meta.{k}", v) for k, v in (meta or {}).items())
    if consistency == "stale":
        params.append(("consistency", "stale"))
    return Call(Request("GET", f"{_path(service)}/instances", tuple(params)), _instances)


def settings(service: str, consistency: Consistency = "linearizable") -> Call[ServiceSettings]:
    params = (("consistency", "stale"),) if consistency == "stale" else ()
    return Call(Request("GET", f"{_path(service)}/settings", params), ServiceSettings.from_json)


def put_settings(service: str, protect_threshold: float) -> Call[ServiceSettings]:
    body = {"protect_threshold": protect_threshold}
    return Call(
        Request("PUT", f"{_path(service)}/settings", json=body),
        lambda d: ServiceSettings.from_json({"protect_threshold": d["protect_threshold"]}),
    )


# -- streams --------------------------------------------------------------------------


def _stream_error(data: str, default: str) -> ShoalError:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = {"message": data}
    if not isinstance(payload, dict):
        payload = {"message": data}
    message = str(payload.get("message") or payload.get("error") or default)
    return WatchClosed(message, code=payload.get("error"))


@dataclass(slots=True)
class KeepAliveCursor:
    """The keep-alive stream of a lease: yields its TTL on every keep-alive frame.

    The stream is served by the leader (a follower redirects to it); while it is open the
    lease stays alive, and with `revoke_on_close` the lease is revoked the moment the
    connection closes. It is reopened after connection trouble (a failover: the new
    leader gave the lease its full TTL); a lease that is gone raises `NotFound`, and a
    stream the server ends (this member stopped leading) is reopened too.
    """

    lease: int
    revoke_on_close: bool = True
    resume: bool = True

    def request(self) -> Request:
        params = () if self.revoke_on_close else (("revoke_on_close", "false"),)
        return Request("GET", f"{API}/leases/{self.lease}/keepalive-stream", params)

    def handle(self, item: SseMessage | SseComment) -> int | None:
        if isinstance(item, SseComment):
            return None
        if item.event == "error":
            raise _stream_error(item.data, "keep-alive stream ended by the server")
        if item.event != "keepalive":
            return None
        try:
            return int(json.loads(item.data)["ttl"])
        except (ValueError, KeyError, TypeError) as error:
            raise ShoalError(f"malformed keep-alive frame {item.data!r}: {error}") from None

    def reopen(self, error: ShoalError) -> bool:
        if isinstance(error, WatchClosed):
            return True  # the member stopped leading: find the new leader
        return isinstance(error, Unavailable) and retryable(error, True)


@dataclass(slots=True)
class InstanceWatchCursor:
    """A service's instance changes (`GET .../watch`), resumed by revision exactly once.

    Events of one revision arrive together in one frame group; like `WatchCursor`, a
    resumed watch starts at the last revision seen and drops what it already delivered.
    """

    service: str
    start_revision: int | None = None
    resume: bool = True
    _last: int | None = field(default=None, init=False)
    _seen_at_last: set[tuple[str, str]] = field(default_factory=set, init=False)

    def request(self) -> Request:
        start = self._last if self._last is not None else self.start_revision
        params = (("start_revision", str(start)),) if start is not None else ()
        return Request("GET", f"{_path(self.service)}/watch", params)

    def handle(self, item: SseMessage | SseComment) -> InstanceEvent | None:
        if isinstance(item, SseComment):
            text = item.text
            opening = f"watching {self.service} from revision "
            if text.startswith(opening) and self._last is None and self.start_revision is None:
                rest = text[len(opening) :].strip()
                if rest.isdigit():
                    self.start_revision = int(rest)
            return None
        if item.event == "error":
            raise _stream_error(item.data, "instance watch ended by the server")
        if item.event not in ("put", "delete"):
            return None
        try:
            data = json.loads(item.data)
            raw = data.get("instance")
            event = InstanceEvent(
                type=item.event,  # type: ignore[arg-type]
                revision=int(data["revision"]),
                service=str(data.get("service", self.service)),
                id=str(data.get("id", "")),
                instance=Instance.from_json(raw) if raw else None,
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ShoalError(f"malformed instance event {item.data!r}: {error}") from None
        mark = (event.type, event.id)
        if self._last is not None and event.revision < self._last:
            return None
        if event.revision == self._last:
            if mark in self._seen_at_last:
                return None
        else:
            self._last, self._seen_at_last = event.revision, set()
        self._seen_at_last.add(mark)
        return event

    def reopen(self, error: ShoalError) -> bool:
        return self.resume and isinstance(error, Unavailable) and retryable(error, True)


# -- the shells' registry namespace ---------------------------------------------------


class _Shell(Protocol):
    def call(self, call: Call[T]) -> T: ...

    def stream(self, cursor: StreamCursor[T]) -> Iterator[T]: ...


class _AsyncShell(Protocol):
    async def call(self, call: Call[T]) -> T: ...

    def stream(self, cursor: StreamCursor[T]) -> AsyncIterator[T]: ...


class RegistryCalls:
    """`cp.registry` on a `ControlPlane`: the calls above, sent."""

    def __init__(self, shell: _Shell) -> None:
        self._shell = shell

    def register(self, service: str, instance_id: str, **fields: Any) -> Registration:
        """See `shoal.client.registry.register` for the fields."""
        return self._shell.call(register(service, instance_id, **fields))

    def deregister(self, service: str, instance_id: str, *, missing_ok: bool = False) -> int:
        return self._shell.call(deregister(service, instance_id, missing_ok=missing_ok))

    def heartbeat(self, service: str, instance_id: str) -> int:
        return self._shell.call(heartbeat(service, instance_id))

    def services(self, consistency: Consistency = "linearizable") -> Services:
        return self._shell.call(services(consistency))

    def instances(self, service: str, **filters: Any) -> ServiceInstances:
        """See `shoal.client.registry.instances` for the filters."""
        return self._shell.call(instances(service, **filters))

    def settings(self, service: str) -> ServiceSettings:
        return self._shell.call(settings(service))

    def put_settings(self, service: str, protect_threshold: float) -> ServiceSettings:
        return self._shell.call(put_settings(service, protect_threshold))

    def watch(self, service: str, start_revision: int | None = None) -> Iterator[InstanceEvent]:
        """Every change to `service`'s instances from `start_revision` (default: now),
        resumed across reconnects without loss or repeats."""
        return self._shell.stream(InstanceWatchCursor(service, start_revision))

    def keepalive_stream(self, lease: int, revoke_on_close: bool = True) -> Iterator[int]:
        return self._shell.stream(KeepAliveCursor(lease, revoke_on_close))


class AsyncRegistryCalls:
    """`cp.registry` on an `AsyncControlPlane`: the same calls, awaited."""

    def __init__(self, shell: _AsyncShell) -> None:
        self._shell = shell

    async def register(self, service: str, instance_id: str, **fields: Any) -> Registration:
        return await self._shell.call(register(service, instance_id, **fields))

    async def deregister(self, service: str, instance_id: str, *, missing_ok: bool = False) -> int:
        return await self._shell.call(deregister(service, instance_id, missing_ok=missing_ok))

    async def heartbeat(self, service: str, instance_id: str) -> int:
        return await self._shell.call(heartbeat(service, instance_id))

    async def services(self, consistency: Consistency = "linearizable") -> Services:
        return await self._shell.call(services(consistency))

    async def instances(self, service: str, **filters: Any) -> ServiceInstances:
        return await self._shell.call(instances(service, **filters))

    async def settings(self, service: str) -> ServiceSettings:
        return await self._shell.call(settings(service))

    async def put_settings(self, service: str, protect_threshold: float) -> ServiceSettings:
        return await self._shell.call(put_settings(service, protect_threshold))

    def watch(
        self, service: str, start_revision: int | None = None
    ) -> AsyncIterator[InstanceEvent]:
        return self._shell.stream(InstanceWatchCursor(service, start_revision))

    def keepalive_stream(self, lease: int, revoke_on_close: bool = True) -> AsyncIterator[int]:
        return self._shell.stream(KeepAliveCursor(lease, revoke_on_close))
