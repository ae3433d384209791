"""Messages between Raft members. Each is a frozen, slotted, keyword-only dataclass.

Every message carries the sender's term; the core compares it first (see `Raft.step`).
Local requests (propose, tick, read_index) are method calls, never messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Entry, Snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    src: str
    dst: str
    term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries(Message):
    """Leader -> follower: entries after (prev_index, prev_term), and the leader's commit."""

    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResponse(Message):
    """Follower -> leader. On success `index` is the last index known to match. On reject
    `index` is the rejected prev_index and (hint_index, hint_term) let the leader skip a whole
    conflicting term at once (thesis 5.3, "fast backtracking")."""

    index: int
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote(Message):
    """Candidate -> voter. `pre` marks a PreVote (the term is the one the candidate *would*
    use; nobody changes term for it). `transfer` marks an election started by TimeoutNow,
    which voters honour even while they still hear from a leader."""

    last_index: int
    last_term: int
    pre: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteResponse(Message):
    granted: bool
    pre: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Message):
    """Leader -> follower. `commit` is capped at what the follower is known to hold;
    `read_seq` numbers the leader's ReadIndex confirmation rounds."""

    commit: int
    read_seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse(Message):
    read_seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit(Message):
    """Leader -> a follower that holds every entry sent to it: the commit index moved.
    Unanswered, unlike the empty append it replaces (whose answer said nothing new and
    cost each follower a frame per write); capped, like a heartbeat's, at what the
    follower is known to hold. A lost one is made good by the next heartbeat."""

    commit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot(Message):
    snapshot: Snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow(Message):
    """Leader -> transfer target: start an election at once (thesis 3.10)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexRequest(Message):
    """Follower -> leader: confirm leadership and tell me the read index for `context`."""

    context: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexResponse(Message):
    index: int
    context: bytes


MESSAGE_TYPES: tuple[type[Message], ...] = (
    AppendEntries,
    AppendResponse,
    RequestVote,
    VoteResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
    Commit,  # last: the wire codes of the others stay as they were
)
