"""The values shoal.events hands back: what a publish did, a group, its lag, and the
options a subscriber runs with. Frozen slotted dataclasses; no behaviour beyond checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["GroupInfo", "GroupLag", "PartitionLag", "Published", "SubscribeOptions"]

Start = Literal["latest", "earliest"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """A publish the backend acknowledged (durably: see the backend's docs). `duplicate`:
    a message with this id was already there, and this publish delivered nothing new."""

    topic: str
    partition: int
    offset: int
    id: str
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "id": self.id,
            "duplicate": self.duplicate,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupInfo:
    topic: str
    group: str
    members: tuple[str, ...]
    claims: dict[int, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "members": list(self.members),
            "claims": {str(p): m for p, m in sorted(self.claims.items())},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionLag:
    partition: int
    committed: int  # every message below this offset is done
    pending: int  # messages retained at or above it
    owner: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupLag:
    topic: str
    group: str
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        return sum(p.pending for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "lag": self.total,
            "partitions": [
                {"partition": p.partition, "committed": p.committed, "pending": p.pending,
                 "owner": p.owner}
                for p in self.partitions
            ],
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeOptions:
    """How a subscriber runs. `start`: where a *new* group begins (an existing group
    resumes where it left off); a plain (group-less) subscriber starts at `from_offset`,
    or now. `lease_ttl`: how long a consumer that froze (rather than died: a dead one's
    connection closes, and its partitions move at once) keeps its partitions."""

    max_in_flight: int = 16
    start: Start = "latest"
    from_offset: int | None = None
    lease_ttl: int = 5
    commit_interval: float = 0.05
    drain_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.start not in ("latest", "earliest"):
            raise ValueError(f"start must be 'latest' or 'earliest', got {self.start!r}")
        if self.lease_ttl < 1:
            raise ValueError(f"lease_ttl must be >= 1 s, got {self.lease_ttl}")
        if self.from_offset is not None and self.from_offset < 0:
            raise ValueError(f"from_offset must be >= 0, got {self.from_offset}")
