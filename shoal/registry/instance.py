"""The instance model: one registered endpoint of a service, validated on construction.

An `Instance` is a frozen, slotted, keyword-only dataclass. Its JSON form is the value
stored under `keys.instance_key(service, id)`; `from_json(to_json(i)) == i`. Nothing here
does I/O or reads a clock: registration time and status times come from the caller.

Rule: every text an instance holds is encodable UTF-8 (no lone surrogate, which JSON's
`"\ud800"` can carry), checked on construction, so an instance that exists can always
be rendered -- a registration can never be committed and then break every discovery.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .checks import CheckSpec, check_encodable, parse_check, parse_duration
from .errors import RegistryError
from .keys import check_name, instance_key
from .status import Health, HealthStatus, parse_status

MAX_ADDRESS = 255
MAX_TAGS = 64
MAX_TAG = 128
MAX_METADATA = 64
MAX_META_VALUE = 512
MAX_VERSION = 128
MAX_WEIGHT = 10_000.0
_META_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """One endpoint of a service. Treat `metadata` as read-only (it is copied in)."""

    service: str
    id: str
    address: str
    port: int
    health: Health
    registered_at: float
    weight: float = 1.0
    zone: str = ""
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    check: CheckSpec | None = None
    deregister_after: float | None = None

    def __post_init__(self) -> None:
        check_name(self.service, "service")
        check_name(self.id, "id")
        _check_text(self.address, "address", MAX_ADDRESS, allow_empty=False)
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise RegistryError("port", f"must be an integer, got {self.port!r}")
        if not 1 <= self.port <= 65535:
            raise RegistryError("port", f"must be between 1 and 65535, got {self.port}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise RegistryError("weight", f"must be a number, got {self.weight!r}")
        if not (math.isfinite(self.weight) and 0 <= self.weight <= MAX_WEIGHT):
            raise RegistryError("weight", f"must be between 0 and {MAX_WEIGHT:g}")
        _check_text(self.zone, "zone", MAX_TAG)
        _check_text(self.version, "version", MAX_VERSION)
        if not isinstance(self.tags, tuple) or len(self.tags) > MAX_TAGS:
            raise RegistryError("tags", f"must be a list of at most {MAX_TAGS} tags")
        for i, tag in enumerate(self.tags):
            _check_text(tag, f"tags[{i}]", MAX_TAG, allow_empty=False)
        if not isinstance(self.metadata, Mapping) or len(self.metadata) > MAX_METADATA:
            raise RegistryError("metadata", f"must be an object of at most {MAX_METADATA} entries")
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not _META_KEY.match(key):
                raise RegistryError(f"metadata.{key}", "keys may hold only [A-Za-z0-9._-]")
            _check_text(value, f"metadata.{key}", MAX_META_VALUE)
        object.__setattr__(self, "metadata", dict(self.metadata))
        if self.check is not None and not isinstance(self.check, CheckSpec):
            raise RegistryError("check", "must be a CheckSpec")
        if self.deregister_after is not None and not (
            isinstance(self.deregister_after, float) and self.deregister_after > 0
        ):
            raise RegistryError("deregister_after", "must be a positive duration")
        if not math.isfinite(self.registered_at) or self.registered_at < 0:
            raise RegistryError("registered_at", "must be a time in Unix seconds")

    @property
    def key(self) -> str:
        return instance_key(self.service, self.id)

    @property
    def healthy(self) -> bool:
        return self.health.status.is_healthy

    def with_health(self, status: HealthStatus, reason: str, now: float) -> Instance:
        return replace(self, health=self.health.changed(status, reason, now))

    def deregister_due(self, now: float) -> bool:
        """Critical for longer than `deregister_after` (never, if that is unset)."""
        return (
            self.deregister_after is not None
            and self.health.status is HealthStatus.CRITICAL
            and now - self.health.since >= self.deregister_after
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "weight": self.weight,
            "zone": self.zone,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "version": self.version,
            "check": self.check.to_json() if self.check else None,
            "deregister_after": self.deregister_after,
            "registered_at": self.registered_at,
            "health": self.health.to_json(),
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: Any) -> Instance:
        if not isinstance(data, dict):
            raise RegistryError("instance", "must be an object")
        try:
            return cls(
                service=data["service"],
                id=data["id"],
                address=data["address"],
                port=data["port"],
                weight=data.get("weight", 1.0),
                zone=data.get("zone", ""),
                tags=tuple(data.get("tags", ())),
                metadata=data.get("metadata", {}),
                version=data.get("version", ""),
                check=parse_check(data["check"]) if data.get("check") else None,
                deregister_after=_seconds_or_none(data.get("deregister_after")),
                registered_at=data["registered_at"],
                health=Health.from_json(data["health"]),
            )
        except KeyError as error:
            raise RegistryError(str(error.args[0]), "missing") from None

    @classmethod
    def decode(cls, value: bytes) -> Instance:
        try:
            data = json.loads(value)
        except ValueError as error:
            raise RegistryError("instance", f"not JSON: {error}") from None
        return cls.from_json(data)


def _seconds_or_none(value: object) -> float | None:
    if value is None:
        return None
    return parse_duration(value, "deregister_after")


def _check_text(value: object, field: str, limit: int, *, allow_empty: bool = True) -> None:
    if not isinstance(value, str):
        raise RegistryError(field, f"must be a string, got {type(value).__name__}")
    check_encodable(value, field)
    if not allow_empty and not value:
        raise RegistryError(field, "must not be empty")
    if len(value) > limit:
        raise RegistryError(field, f"must be at most {limit} characters")
    if allow_empty is False and any(c.isspace() for c in value):
        raise RegistryError(field, f"must not contain whitespace: {value!r}")


def registration(
    service: str,
    instance_id: str,
    body: Mapping[str, Any],
    *,
    now: float,
    previous: Instance | None = None,
) -> Instance:
    """The instance a registration body describes (the JSON of the HTTP PUT).

    A re-registration keeps the first registration time and, unless the body gives a
    ``status``, the current health: updating metadata must not reset a checked status.
    A new instance starts ``passing`` (the registrant says it is ready) unless told
    otherwise.
    """
    check = parse_check(body["check"]) if body.get("check") is not None else None
    after = body.get("deregister_after")
    deregister_after = parse_duration(after, "deregister_after") if after is not None else None
    if "status" in body and body["status"] is not None:
        status = parse_status(body["status"])
        base = previous.health if previous else Health(status=status, reason="", since=now)
        health = base.changed(status, "set at registration", now)
    elif previous is not None:
        health = previous.health
    else:
        health = Health(status=HealthStatus.PASSING, reason="registered", since=now)
    tags = body.get("tags", [])
    if not isinstance(tags, list | tuple):
        raise RegistryError("tags", "must be a list of strings")
    if "address" not in body:
        raise RegistryError("address", "missing")
    if "port" not in body:
        raise RegistryError("port", "missing")
    weight = body.get("weight", 1.0)
    return Instance(
        service=service,
        id=instance_id,
        address=body["address"],
        port=body["port"],
        weight=float(weight)
        if isinstance(weight, int) and not isinstance(weight, bool)
        else weight,
        zone=body.get("zone", "") or "",
        tags=tuple(tags),
        metadata=body.get("metadata", {}) or {},
        version=body.get("version", "") or "",
        check=check,
        deregister_after=deregister_after,
        registered_at=previous.registered_at if previous else now,
        health=health,
    )
