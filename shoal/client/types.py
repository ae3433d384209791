"""What the control plane answers, as frozen dataclasses whose fields mirror the JSON of
`/api/v1` one to one (so `dataclasses.asdict` gives the server's shape back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ClusterMember",
    "ClusterStatus",
    "Event",
    "KeyValue",
    "LeaseTimeToLive",
    "Page",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyValue:
        return cls(
            key=data["key"],
            value=data["value"],
            create_revision=int(data["create_revision"]),
            mod_revision=int(data["mod_revision"]),
            version=int(data["version"]),
            lease=data.get("lease") or None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One page of a listing. `next_after` continues it; `revision` is the one it was read at."""

    kvs: tuple[KeyValue, ...]
    more: bool
    next_after: str | None
    count: int
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    type: Literal["put", "delete"]
    revision: int
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        kind = data["type"]
        if kind not in ("put", "delete"):
            raise ValueError(f"unknown event type {kind!r}")
        prev = data.get("prev_kv")
        return cls(
            type=kind,
            revision=int(data["revision"]),
            kv=KeyValue.from_json(data["kv"]),
            prev_kv=KeyValue.from_json(prev) if prev else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseTimeToLive:
    id: int
    granted_ttl: int
    remaining: float
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterMember:
    name: str
    voter: bool
    leader: bool
    client_url: str | None
    peer_addr: str | None
    match_index: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterStatus:
    member: str
    leader: str | None
    term: int
    role: str
    commit_index: int
    applied_index: int
    revision: int
    members: tuple[ClusterMember, ...]
