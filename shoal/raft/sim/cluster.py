"""A simulated cluster: members with durable storage that survives crashes, a network,
clients that write and read, and the checker watching every step. Pure and deterministic:
one seed fixes every choice.

Each member is driven exactly as a real driver would drive `RawNode` (see rawnode.py):
send the early messages, persist, send the rest, apply, advance. A crash may strike
between those steps, and then everything not yet persisted is gone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ProposalRejected
from ..options import RaftConfig
from ..rawnode import RawNode, Ready
from ..types import ConfState, Entry, HardState, Role, Snapshot
from .checker import SafetyChecker, Violation
from .network import TICK, SimNetwork

Trace = Callable[[int, str], None]


def encode_state(state: list[tuple[int, bytes]]) -> bytes:
    return b"\n".join(b"%d=%s" % (index, data) for index, data in state)


def decode_state(blob: bytes) -> list[tuple[int, bytes]]:
    out = []
    for line in blob.split(b"\n") if blob else []:
        index, _, data = line.partition(b"=")
        out.append((int(index), data))
    return out


@dataclass(slots=True)
class DurableStore:
    """What survives a crash: hard state, the last snapshot and the entries after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot = field(default_factory=Snapshot)
    entries: list[Entry] = field(default_factory=list)

    def write_entries(self, entries: tuple[Entry, ...]) -> None:
        keep = entries[0].index - self.snapshot.index - 1
        del self.entries[keep:]
        self.entries.extend(entries)

    def write_snapshot(self, snap: Snapshot, discard_log: bool) -> None:
        if discard_log:
            self.entries = []
        else:
            self.entries = [e for e in self.entries if e.index > snap.index]
        self.snapshot = snap

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot.index:
            return self.snapshot.term
        offset = index - self.snapshot.index - 1
        if 0 <= offset < len(self.entries):
            return self.entries[offset].term
        return None


@dataclass(slots=True)
class PendingWrite:
    value: bytes
    member: str
    index: int
    term: int
    deadline: int


@dataclass(slots=True)
class PendingRead:
    context: bytes
    member: str
    acked_before: int
    deadline: int


@dataclass(slots=True)
class SimMember:
    id: str
    store: DurableStore
    node: RawNode | None = None
    state: list[tuple[int, bytes]] = field(default_factory=list)  # the applied writes
    applied: int = 0
    restarts: int = 0
    crash_armed: bool = False  # crash at a random point of the next Ready

    @property
    def alive(self) -> bool:
        return self.node is not None


class SimCluster:
    def __init__(
        self,
        seed: int,
        members: int,
        *,
        config: Callable[[str], RaftConfig] | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.net = SimNetwork(random.Random(seed * 7919 + 1))
        self.checker = SafetyChecker()
        self.tick_count = 0
        self._config = config or (lambda member_id: RaftConfig(id=member_id))
        self._trace = trace
        self.members: dict[str, SimMember] = {}
        self._next_id = 1
        ids = [self._new_id() for _ in range(members)]
        initial = Snapshot(conf=ConfState(voters=frozenset(ids)))
        for member_id in ids:
            self._add_member(member_id, DurableStore(snapshot=initial))
        self.writes: dict[str, PendingWrite] = {}
        self.reads: dict[bytes, PendingRead] = {}
        self.acked_writes = 0
        self._read_seq = 0
        self._leader_seen: dict[str, tuple[Role, int]] = {}
        self.members_target = members  # the size membership changes hover around

    # -- membership of the simulation ---------------------------------------------------

    def _new_id(self) -> str:
        member_id = f"n{self._next_id}"
        self._next_id += 1
        return member_id

    def _add_member(self, member_id: str, store: DurableStore) -> SimMember:
        member = SimMember(member_id, store)
        self.members[member_id] = member
        self._start(member)
        return member

    def spawn_member(self) -> str:
        """Start a new, empty member that waits to be added to the configuration."""
        member = self._add_member(self._new_id(), DurableStore())
        self.trace(f"{member.id} started empty, waiting to join")
        return member.id

    def _start(self, member: SimMember) -> None:
        store = member.store
        rng = random.Random(f"{self.seed}/{member.id}/{member.restarts}")
        member.node = RawNode(
            self._config(member.id),
            rng,
            hard_state=store.hard_state,
            snapshot=store.snapshot,
            entries=list(store.entries),
        )
        member.state = decode_state(store.snapshot.data)
        member.applied = store.snapshot.index
        self.checker.on_restart(member.id, store.snapshot.index)

    def crash(self, member_id: str) -> None:
        member = self.members[member_id]
        if member.node is not None:
            member.node = None
            member.crash_armed = False
            self._leader_seen.pop(member_id, None)
            self.trace(f"{member_id} crashed")

    def restart(self, member_id: str) -> None:
        member = self.members[member_id]
        if member.node is None:
            member.restarts += 1
            self._start(member)
            self.trace(f"{member_id} restarted (term {member.store.hard_state.term})")

    # -- observation --------------------------------------------------------------------

    def trace(self, text: str) -> None:
        if self._trace is not None:
            self._trace(self.tick_count, text)

    def live(self) -> list[SimMember]:
        return [m for m in self.members.values() if m.node is not None]

    def leader(self) -> SimMember | None:
        """The live leader of the highest term, if any."""
        best: SimMember | None = None
        for m in self.live():
            assert m.node is not None
            if m.node.role is Role.LEADER and (
                best is None or best.node is None or m.node.term > best.node.term
            ):
                best = m
        return best

    # -- time ---------------------------------------------------------------------------

    def run_ticks(self, ticks: int, between: Callable[[], None] | None = None) -> None:
        for _ in range(ticks):
            self.step_tick()
            if between is not None:
                between()

    def step_tick(self) -> None:
        end = (self.tick_count + 1) * TICK
        while (m := self.net.pop_due(end)) is not None:
            member = self.members.get(m.dst)
            if member is not None and member.node is not None:
                member.node.step(m)
                self._drive(member)
        self.net.now = end
        self.tick_count += 1
        for member in self.live():
            assert member.node is not None
            member.node.tick()
            self._drive(member)
        self._expire_requests()

    # -- the driver: exactly the RawNode contract ---------------------------------------

    def _drive(self, member: SimMember) -> None:
        while member.node is not None and member.node.has_ready():
            node = member.node
            rd = node.ready()
            for m in rd.messages:
                self.net.send(m)
            if member.crash_armed and self.rng.random() < 0.5:
                self.crash(member.id)  # before persisting: this Ready is lost
                return
            self._persist(member, rd)
            if member.crash_armed:
                self.crash(member.id)  # persisted, but nothing sent or applied
                return
            for m in rd.persisted_messages:
                self.net.send(m)
            self._apply(member, rd)
            node.advance(rd)
            self._observe_role(member)

    def _persist(self, member: SimMember, rd: Ready) -> None:
        store = member.store
        if rd.snapshot is not None:
            store.write_snapshot(rd.snapshot, discard_log=True)
        if rd.entries:
            prev_term = store.term_at(rd.entries[0].index - 1)
            store.write_entries(rd.entries)
            self.checker.on_persist(member.id, rd.entries, prev_term)
        if rd.hard_state is not None:
            store.hard_state = rd.hard_state

    def _apply(self, member: SimMember, rd: Ready) -> None:
        if rd.snapshot is not None:
            member.state = decode_state(rd.snapshot.data)
            member.applied = rd.snapshot.index
            self.checker.on_restore(member.id, rd.snapshot, member.state)
        for entry in rd.committed_entries:
            self.checker.on_apply(member.id, entry)
            member.applied = entry.index
            if entry.data:
                member.state.append((entry.index, entry.data))
            if entry.change is not None and self._is_leader(member):
                change = entry.change
                result = change.result
                self.trace(
                    f"{change.op.value} {change.node} committed at {entry.index}: "
                    f"voters {sorted(result.voters)} learners {sorted(result.learners)}"
                )
            self._settle_write(member, entry)
        for rs in rd.read_states:
            read = self.reads.pop(rs.context, None)
            if read is not None and read.member == member.id:
                self.checker.on_read(member.id, rs.index, read.acked_before)

    @staticmethod
    def _is_leader(member: SimMember) -> bool:
        return member.node is not None and member.node.role is Role.LEADER

    def _observe_role(self, member: SimMember) -> None:
        node = member.node
        assert node is not None
        seen = (node.role, node.term)
        before = self._leader_seen.get(member.id)
        if before == seen:
            return
        self._leader_seen[member.id] = seen
        if before is not None and before[0] is Role.LEADER and node.role is not Role.LEADER:
            self.trace(f"{member.id} stepped down as leader of term {before[1]}")
        if node.role is Role.LEADER:
            first = node.snapshot.index + 1
            terms = {e.index: e.term for e in node.log_entries()}
            self.checker.on_leader(member.id, node.term, terms, first)
            self.trace(f"{member.id} became leader of term {node.term}")

    # -- clients ------------------------------------------------------------------------

    def propose(self, client: str, value: bytes, member_id: str) -> bool:
        """A client writes `value` through `member_id`; True if the member accepted it."""
        member = self.members[member_id]
        if member.node is None:
            return False
        try:
            index = member.node.propose(value)
        except ProposalRejected:
            return False
        self.writes[client] = PendingWrite(
            value, member_id, index, member.node.term, self.tick_count + 40
        )
        self._drive(member)
        return True

    def _settle_write(self, member: SimMember, entry: Entry) -> None:
        for client, write in list(self.writes.items()):
            if write.member == member.id and write.index == entry.index:
                del self.writes[client]
                if entry.term == write.term and entry.data == write.value:
                    self.checker.on_ack(write.value, entry.index)
                    self.acked_writes += 1
                    self.trace(f"{write.value.decode()} committed at index {entry.index}")

    def read(self, member_id: str) -> bool:
        member = self.members[member_id]
        if member.node is None:
            return False
        self._read_seq += 1
        context = b"r%d" % self._read_seq
        try:
            member.node.read_index(context)
        except ProposalRejected:
            return False
        self.reads[context] = PendingRead(
            context, member_id, self.checker.max_acked_index, self.tick_count + 40
        )
        self._drive(member)
        return True

    def _expire_requests(self) -> None:
        # A request whose member crashed or lost its leader just times out, as in life.
        now = self.tick_count

        def waiting(w: PendingWrite) -> bool:
            node = self.members[w.member].node
            # The client gives up on a member that crashed or moved to another term; the
            # write's fate is then unknown to it, as with a real timeout.
            return (
                w.deadline > now
                and node is not None
                and node.term == w.term
                and node.role is Role.LEADER
            )

        self.writes = {c: w for c, w in self.writes.items() if waiting(w)}
        self.reads = {c: r for c, r in self.reads.items() if r.deadline > now}

    # -- end-of-run checks --------------------------------------------------------------

    def check_converged(self) -> None:
        voters = self.committed_voters()
        for member_id in sorted(voters):
            member = self.members[member_id]
            if member.node is None:
                continue
            self.checker.check_durable(member_id, member.state)

    def committed_voters(self) -> frozenset[str]:
        leader = self.leader()
        if leader is None or leader.node is None:
            raise Violation("no leader")
        return leader.node.conf.voters
