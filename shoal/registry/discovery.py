"""Discovery: which instances a query returns, and the protect threshold.

Filters (all must hold): ``healthy`` (status not critical), every ``tag`` given, the
``zone``, and every ``meta.k=v``. They arrive as query parameters and are parsed here so
that server and clients agree on their meaning.

Protect threshold (per service, 0 = off, the default). When a caller asks for healthy
instances and the healthy fraction of the matching instances is below the threshold,
discovery returns all matching instances instead and says so (``protected``): a mass
failure -- or a broken checker -- must not empty discovery or pile all traffic onto the
few survivors. The fraction is taken over the instances the other filters select.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import RegistryError
from .instance import Instance

_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceFilter:
    healthy: bool = False
    tags: tuple[str, ...] = ()
    zone: str | None = None
    meta: tuple[tuple[str, str], ...] = ()

    def selects(self, instance: Instance) -> bool:
        """Every criterion but health (health is the protect threshold's business)."""
        if self.zone is not None and instance.zone != self.zone:
            return False
        if any(tag not in instance.tags for tag in self.tags):
            return False
        return all(instance.metadata.get(k) == v for k, v in self.meta)


def parse_filter(params: Iterable[tuple[str, str]]) -> InstanceFilter:
    """An `InstanceFilter` from query parameters; anything unknown is an error."""
    healthy, zone = False, None
    tags: list[str] = []
    meta: list[tuple[str, str]] = []
    for name, value in params:
        if name == "healthy":
            if value.lower() not in _TRUE:
                raise RegistryError("healthy", f"must be true or false, got {value!r}")
            healthy = _TRUE[value.lower()]
        elif name == "tag":
            tags.append(value)
        elif name == "zone":
            zone = value
        elif name.startswith("meta.") and len(name) > len("meta."):
            meta.append((name[len("meta.") :], value))
        else:
            raise RegistryError(name, "unknown query parameter (healthy, tag, zone, meta.k)")
    return InstanceFilter(healthy=healthy, tags=tuple(tags), zone=zone, meta=tuple(meta))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    """Per-service settings, stored under `keys.settings_key`."""

    protect_threshold: float = 0.0  # 0 = off

    def __post_init__(self) -> None:
        t = self.protect_threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise RegistryError("protect_threshold", f"must be a number, got {t!r}")
        if not 0 <= t <= 1:
            raise RegistryError("protect_threshold", f"must be between 0 and 1, got {t}")

    def to_json(self) -> dict[str, Any]:
        return {"protect_threshold": self.protect_threshold}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: Any) -> ServiceSettings:
        if not isinstance(data, dict):
            raise RegistryError("settings", "must be an object")
        unknown = sorted(set(data) - {"protect_threshold"})
        if unknown:
            raise RegistryError(unknown[0], "unknown setting (protect_threshold)")
        return cls(protect_threshold=data.get("protect_threshold", 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovery:
    instances: tuple[Instance, ...]
    total: int  # instances the non-health filters select
    healthy: int  # of those, how many are healthy
    protected: bool  # the threshold kicked in: unhealthy instances are included


def discover(
    instances: Iterable[Instance], query: InstanceFilter, protect_threshold: float = 0.0
) -> Discovery:
    selected = tuple(i for i in instances if query.selects(i))
    healthy = tuple(i for i in selected if i.healthy)
    protected = (
        query.healthy
        and protect_threshold > 0
        and bool(selected)
        and len(healthy) / len(selected) < protect_threshold
    )
    chosen = selected if protected or not query.healthy else healthy
    return Discovery(
        instances=chosen, total=len(selected), healthy=len(healthy), protected=protected
    )


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    name: str
    instances: int
    healthy: int


def summarize(instances: Iterable[Instance]) -> list[ServiceSummary]:
    """One summary per service name, sorted by name."""
    counts: dict[str, list[int]] = {}
    for instance in instances:
        total_healthy = counts.setdefault(instance.service, [0, 0])
        total_healthy[0] += 1
        total_healthy[1] += instance.healthy
    return [ServiceSummary(name, t, h) for name, (t, h) in sorted(counts.items())]
