"""`RawNode`: the Raft core's whole surface for a driver, and the `Ready` contract.

The driver owns the I/O and runs this loop (etcd-io/raft's Ready/Advance, in Python):

1. Feed input: `step(message)` for every message from a peer, `tick()` on a timer, and the
   application's `propose` / `propose_conf_change` / `read_index` / `transfer_leadership`.
2. When `has_ready()`, take `rd = ready()` and, in this order:
   a. send `rd.messages` (a leader's replication traffic may go out before its own disk
      write finishes: thesis 10.2.1);
   b. make durable `rd.snapshot`, then `rd.entries` (replacing any stored entries from
      `rd.entries[0].index` on), then `rd.hard_state` -- entries before hard state, so a
      durable commit index never points past the durable log; when `rd.must_sync` is
      False only the commit index changed and the write needs no fsync;
   c. send `rd.persisted_messages` (votes and acknowledgements promise durable state);
   d. install `rd.snapshot` into the state machine, then apply `rd.committed_entries` in
      order (skip entries with no data and no change: a new leader's no-op);
   e. serve `rd.read_states` once the applied index reaches each one's index;
   f. call `advance(rd)`.
3. `ready()` may not be called again before `advance()`.

Nothing here does I/O, reads a clock or draws from global randomness: the driver passes
the RNG that randomizes election timeouts, so a seeded run replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import UsageError
from .messages import AppendEntries, Commit, Heartbeat, InstallSnapshot, Message, TimeoutNow
from .options import RaftConfig
from .progress import ProgressState
from .raft import Raft
from .types import (
    ConfChangeOp,
    ConfState,
    Entry,
    HardState,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)

# What a leader may send before its own write is durable.
_SEND_BEFORE_PERSIST = (AppendEntries, Commit, Heartbeat, InstallSnapshot, TimeoutNow)


@dataclass(frozen=True, slots=True)
class Ready:
    soft_state: SoftState | None
    hard_state: HardState | None
    snapshot: Snapshot | None
    entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    persisted_messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    # False when only the commit index changed: it may be written without an fsync, since
    # a lost commit index is learned again from the leader (etcd's MustSync).
    must_sync: bool = True

    @property
    def must_persist(self) -> bool:
        return bool(self.hard_state or self.entries or self.snapshot)


@dataclass(frozen=True, slots=True)
class MemberProgress:
    match: int
    next: int
    state: ProgressState


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    role: Role
    term: int
    leader: str | None
    commit: int
    applied: int
    last_index: int
    conf: ConfState
    progress: dict[str, MemberProgress] = field(default_factory=dict)


class RawNode:
    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
    ) -> None:
        """Start a member from what it persisted (nothing, for a new empty member).

        A new cluster's members each start with `snapshot=Snapshot(conf=ConfState(voters=...))`
        naming the initial voters; a member that will join a running cluster starts empty.
        """
        hard_state = hard_state or HardState()
        snapshot = snapshot or Snapshot()
        self._raft = Raft(config, rng, hard_state, snapshot, entries)
        self._hard = hard_state
        self._soft = self._soft_state()
        self._outstanding: Ready | None = None

    # -- input --------------------------------------------------------------------------

    def tick(self) -> None:
        self._raft.tick()

    def step(self, message: Message) -> None:
        self._raft.step(message)

    def campaign(self) -> None:
        """Start an election now (used to bootstrap a one-member cluster without waiting)."""
        if self._raft.role is not Role.LEADER:
            self._raft.campaign()

    def propose(self, data: bytes) -> int:
        """Append one entry; returns its index. Raises NotLeader / TransferInProgress."""
        return self._raft.propose([data])[1]

    def propose_many(self, payloads: Sequence[bytes]) -> tuple[int, int]:
        """Append a batch of entries in one go; returns (first, last) index."""
        return self._raft.propose(payloads)

    def propose_conf_change(self, op: ConfChangeOp, node: str, context: bytes = b"") -> int:
        return self._raft.propose_conf_change(op, node, context)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; a `ReadState` with this context arrives in a Ready."""
        self._raft.read_index(context)

    def transfer_leadership(self, to: str) -> None:
        self._raft.transfer_leadership(to)

    def report_unreachable(self, peer: str) -> None:
        self._raft.report_unreachable(peer)

    def report_leader_lost(self, peer: str) -> None:
        """`peer`'s connection to this member closed (see Raft.report_leader_lost)."""
        self._raft.report_leader_lost(peer)

    def report_snapshot(self, peer: str, ok: bool) -> None:
        self._raft.report_snapshot(peer, ok)

    def create_snapshot(self, index: int, data: bytes) -> Snapshot:
        """Record the application's snapshot at applied `index`, compacting the log to it.

        The driver persists the returned snapshot before discarding stored entries.
        """
        return self._raft.create_snapshot(index, data)

    # -- output -------------------------------------------------------------------------

    def has_ready(self) -> bool:
        # Field by field rather than building HardState/SoftState: this runs on every loop.
        r, log, hard, soft = self._raft, self._raft.log, self._hard, self._soft
        return bool(
            r.msgs
            or r.read_states
            or log.pending_snapshot
            or log.stabled < log.last_index
            or log.applying < log.committed
            or r.term != hard.term
            or r.vote != hard.vote
            or log.committed != hard.commit
            or r.role is not soft.role
            or r.leader != soft.leader
            or r.term != soft.term
        )

    def ready(self) -> Ready:
        if self._outstanding is not None:
            raise UsageError("ready() called again before advance()")
        r = self._raft
        hard = self._current_hard()
        soft = self._soft_state()
        msgs, r.msgs = r.msgs, []
        vote_changed = (hard.term, hard.vote) != (self._hard.term, self._hard.vote)
        if vote_changed:
            now: list[Message] = []
            later = msgs
        else:
            now = [m for m in msgs if isinstance(m, _SEND_BEFORE_PERSIST)]
            later = [m for m in msgs if not isinstance(m, _SEND_BEFORE_PERSIST)]
        rd_entries = r.log.unstable()
        committed = r.log.next_to_apply()
        if committed:
            r.log.mark_handed_out(committed[-1].index)
        rd = Ready(
            soft_state=soft if soft != self._soft else None,
            hard_state=hard if hard != self._hard else None,
            snapshot=r.log.pending_snapshot,
            entries=rd_entries,
            messages=tuple(now),
            persisted_messages=tuple(later),
            committed_entries=committed,
            read_states=tuple(r.read_states),
            must_sync=vote_changed or bool(rd_entries) or r.log.pending_snapshot is not None,
        )
        r.read_states = []
        self._soft = soft
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self._outstanding:
            raise UsageError("advance() must get the Ready that ready() returned last")
        log = self._raft.log
        if rd.snapshot is not None and log.pending_snapshot is rd.snapshot:
            log.pending_snapshot = None
        if rd.entries:
            log.stable_to(rd.entries[-1].index, rd.entries[-1].term)
        if rd.hard_state is not None:
            self._hard = rd.hard_state
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
        self._outstanding = None
        self._raft.on_persisted()

    # -- inspection ---------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._raft.id

    @property
    def role(self) -> Role:
        return self._raft.role

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def leader(self) -> str | None:
        return self._raft.leader

    @property
    def conf(self) -> ConfState:
        return self._raft.conf

    @property
    def transferee(self) -> str | None:
        return self._raft.transferee

    def status(self) -> Status:
        r = self._raft
        return Status(
            id=r.id,
            role=r.role,
            term=r.term,
            leader=r.leader,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index,
            conf=r.conf,
            progress={
                peer: MemberProgress(pr.match, pr.next, pr.state) for peer, pr in r.progress.items()
            },
        )

    def recently_active(self) -> frozenset[str]:
        """On a leader, the members it has heard from since its last CheckQuorum round
        (every election timeout), itself included; empty on any other member. Read-only:
        the driver derives its view of which members are alive from it."""
        r = self._raft
        if r.role is not Role.LEADER:
            return frozenset()
        return frozenset({r.id, *(p for p, pr in r.progress.items() if pr.recent_active)})

    def log_entries(self) -> tuple[Entry, ...]:
        """Every entry held in memory (after the last snapshot); for checks and tools."""
        log = self._raft.log
        if log.last_index < log.first_index:
            return ()
        return log.slice(log.first_index, 1 << 62)

    @property
    def snapshot(self) -> Snapshot:
        return self._raft.log.snapshot

    def _current_hard(self) -> HardState:
        r = self._raft
        return HardState(term=r.term, vote=r.vote, commit=r.log.committed)

    def _soft_state(self) -> SoftState:
        r = self._raft
        return SoftState(leader=r.leader, role=r.role, term=r.term)
