"""The values the Raft core shares with its driver: entries, hard state, configurations,
snapshots and read states. All are frozen and slotted; none does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class ConfChangeOp(enum.Enum):
    ADD_VOTER = "add-voter"
    ADD_LEARNER = "add-learner"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class ConfState:
    """A cluster configuration: who votes and who only receives the log."""

    voters: frozenset[str] = frozenset()
    learners: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.voters & self.learners:
            both = sorted(self.voters & self.learners)
            raise ValueError(f"members both voter and learner: {both}")

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    def apply(self, op: ConfChangeOp, node: str) -> ConfState:
        """The configuration after one single-member change."""
        voters, learners = set(self.voters), set(self.learners)
        voters.discard(node)
        learners.discard(node)
        if op is ConfChangeOp.ADD_VOTER:
            voters.add(node)
        elif op is ConfChangeOp.ADD_LEARNER:
            learners.add(node)
        return ConfState(frozenset(voters), frozenset(learners))


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One single-member change and the whole configuration it produces.

    Carrying the result makes every conf entry self-contained: a member that joins late
    learns the full configuration from the first change it sees.
    """

    op: ConfChangeOp
    node: str
    result: ConfState
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. `change` is set for membership changes; an empty entry with no
    change is the no-op a new leader appends (applications skip it)."""

    term: int
    index: int
    data: bytes = b""
    change: ConfChange | None = None

    def __post_init__(self) -> None:
        if self.term < 0 or self.index < 1:
            raise ValueError(f"bad entry position term={self.term} index={self.index}")

    @property
    def size(self) -> int:
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine as of `index`, plus the configuration in force there."""

    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed linearizable read: serve `context` once applied index >= `index`."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile facts the driver may show or act on; never persisted."""

    leader: str | None
    role: Role
    term: int
