"""A small deterministic harness for scripted Raft scenarios: RawNodes and a message queue
that the test controls completely.

Every member is driven exactly by the `RawNode` contract (see shoal/raft/rawnode.py):
send `rd.messages`, persist snapshot / entries / hard state into an in-memory durable
store, send `rd.persisted_messages`, install the snapshot and apply committed entries,
collect read states, `advance(rd)`. Messages go into one FIFO queue; nothing is delivered
until the test says so (`deliver`, `stabilize`). Time passes only through `tick`.

A `SafetyChecker` watches every persisted and applied entry, so a scenario that breaks
state machine safety raises `Violation` out of the driving call that exposed it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from shoal.raft.messages import Message
from shoal.raft.options import RaftConfig
from shoal.raft.rawnode import RawNode, Ready
from shoal.raft.sim.checker import SafetyChecker
from shoal.raft.sim.cluster import DurableStore, decode_state, encode_state
from shoal.raft.types import ConfState, Entry, ReadState, Role, Snapshot

Filter = Callable[[Message], bool]  # True means: drop this message
M = TypeVar("M", bound=Message)


class Cluster:
    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        config: Callable[[str], RaftConfig] | None = None,
    ) -> None:
        self.seed = seed
        self.config = config or (
            lambda member: RaftConfig(id=member, election_ticks=10, heartbeat_ticks=1)
        )
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        initial = Snapshot(conf=ConfState(voters=frozenset(self.ids)))
        self.stores: dict[str, DurableStore] = {}
        self.nodes: dict[str, RawNode | None] = {}
        self.restarts: dict[str, int] = {}
        self.state: dict[str, list[tuple[int, bytes]]] = {}  # applied writes
        self.applied: dict[str, list[Entry]] = {}  # every entry applied since (re)start
        self.applied_index: dict[str, int] = {}
        self.read_states: dict[str, list[ReadState]] = {}
        self.readies: dict[str, list[Ready]] = {}
        self.queue: deque[Message] = deque()
        self.sent: list[Message] = []  # every message any member sent, in order
        self.delivered: list[Message] = []
        self.filters: list[Filter] = []
        self.isolated: set[str] = set()
        self.checker = SafetyChecker()
        for member in self.ids:
            self.stores[member] = DurableStore(snapshot=initial)
            self.restarts[member] = 0
            self._start(member)

    # -- members --------------------------------------------------------------------------

    def _start(self, member: str) -> None:
        store = self.stores[member]
        rng = random.Random(f"{self.seed}/{member}/{self.restarts[member]}")
        self.nodes[member] = RawNode(
            self.config(member),
            rng,
            hard_state=store.hard_state,
            snapshot=store.snapshot,
            entries=list(store.entries),
        )
        self.state[member] = decode_state(store.snapshot.data)
        self.applied[member] = []
        self.applied_index[member] = store.snapshot.index
        self.read_states.setdefault(member, [])
        self.readies.setdefault(member, [])
        self.checker.on_restart(member, store.snapshot.index)

    def add_empty(self, member: str) -> RawNode:
        """Start a new member with nothing persisted, waiting to be added (thesis 4.1)."""
        self.ids.append(member)
        self.stores[member] = DurableStore()
        self.restarts[member] = 0
        self._start(member)
        return self.node(member)

    def node(self, member: str) -> RawNode:
        node = self.nodes[member]
        assert node is not None, f"{member} is down"
        return node

    def live(self) -> list[str]:
        return [m for m in self.ids if self.nodes[m] is not None]

    def crash(self, member: str) -> None:
        """Lose everything not yet persisted; messages already sent stay in flight."""
        self.nodes[member] = None

    def restart(self, member: str) -> None:
        assert self.nodes[member] is None, f"{member} is running"
        self.restarts[member] += 1
        self._start(member)

    def leader(self) -> str | None:
        """The live leader of the highest term, if any."""
        best: str | None = None
        for member in self.live():
            node = self.node(member)
            if node.role is Role.LEADER and (best is None or node.term > self.node(best).term):
                best = member
        return best

    def leaders(self) -> list[str]:
        return [m for m in self.live() if self.node(m).role is Role.LEADER]

    # -- the driver ------------------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.sent.append(m)
            self.queue.append(m)

    def persist(self, member: str, rd: Ready) -> None:
        store = self.stores[member]
        if rd.snapshot is not None:
            store.write_snapshot(rd.snapshot, discard_log=True)
        if rd.entries:
            prev_term = store.term_at(rd.entries[0].index - 1)
            store.write_entries(rd.entries)
            self.checker.on_persist(member, rd.entries, prev_term)
        if rd.hard_state is not None:
            store.hard_state = rd.hard_state

    def apply(self, member: str, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.state[member] = decode_state(rd.snapshot.data)
            self.applied_index[member] = rd.snapshot.index
            self.checker.on_restore(member, rd.snapshot, self.state[member])
        for entry in rd.committed_entries:
            self.checker.on_apply(member, entry)
            self.applied[member].append(entry)
            self.applied_index[member] = entry.index
            if entry.data:
                self.state[member].append((entry.index, entry.data))
        self.read_states[member].extend(rd.read_states)

    def handle(self, member: str, rd: Ready, *, send: bool = True) -> None:
        """Carry out one Ready in contract order, then advance."""
        self.readies[member].append(rd)
        if send:
            self.send(rd.messages)
        self.persist(member, rd)
        if send:
            self.send(rd.persisted_messages)
        self.apply(member, rd)
        self.node(member).advance(rd)

    def drain(self, member: str, *, send: bool = True) -> None:
        node = self.nodes[member]
        while node is not None and node.has_ready():
            self.handle(member, node.ready(), send=send)

    def flush(self) -> None:
        for member in self.live():
            self.drain(member)

    def dropped(self, m: Message) -> bool:
        return m.src in self.isolated or m.dst in self.isolated or any(f(m) for f in self.filters)

    def deliver(self, which: Filter | None = None) -> int:
        """Deliver the queued messages that `which` selects (all by default), once.

        Messages they cause are queued, not delivered. Returns how many were stepped.
        """
        keep: deque[Message] = deque()
        stepped = 0
        batch, self.queue = self.queue, deque()
        for m in batch:
            if which is not None and not which(m):
                keep.append(m)
                continue
            node = self.nodes.get(m.dst)
            if node is None or self.dropped(m):
                continue
            self.delivered.append(m)
            node.step(m)
            stepped += 1
        self.queue = keep + self.queue
        return stepped

    def stabilize(self, which: Filter | None = None, max_rounds: int = 500) -> None:
        """Drain every Ready and deliver every message (that `which` selects, if given)
        until nothing moves."""
        for _ in range(max_rounds):
            self.flush()
            if not self.deliver(which) and not any(which is None or which(m) for m in self.queue):
                return
        raise AssertionError("cluster did not stabilize")

    # -- time and faults -------------------------------------------------------------------

    def tick(self, members: Iterable[str] | None = None, n: int = 1) -> None:
        """Tick the given live members (all by default) n times, without driving them."""
        chosen = list(self.live() if members is None else members)
        for _ in range(n):
            for member in chosen:
                if self.nodes[member] is not None:
                    self.node(member).tick()

    def run(self, ticks: int, members: Iterable[str] | None = None) -> None:
        """Tick, then stabilize, `ticks` times."""
        chosen = list(self.live() if members is None else members)
        for _ in range(ticks):
            self.tick(chosen)
            self.stabilize()

    def isolate(self, member: str) -> None:
        self.isolated.add(member)

    def heal(self) -> None:
        self.isolated.clear()

    def drop(self, f: Filter) -> Filter:
        self.filters.append(f)
        return f

    def undrop(self, f: Filter) -> None:
        self.filters.remove(f)

    @contextmanager
    def dropping(self, f: Filter) -> Iterator[None]:
        self.drop(f)
        try:
            yield
        finally:
            self.undrop(f)

    def expire_leases(self, members: Iterable[str]) -> None:
        """Let an election timeout pass on followers that heard nothing from a leader.

        What those ticks make them send (PreVotes into the void) is discarded.
        """
        for member in members:
            self.tick([member], self.config(member).election_ticks)
            self.drain(member, send=False)

    def elect(self, member: str, attempts: int = 10, which: Filter | None = None) -> None:
        """Make `member` the leader by campaigning (after leases lapse, if needed);
        `which` limits the messages delivered meanwhile."""
        for _ in range(attempts):
            node = self.node(member)
            if node.role is Role.LEADER:
                break
            others = [
                o for o in self.live() if o != member and self.node(o).role is not Role.LEADER
            ]
            if any(self.node(o).leader is not None for o in others):
                self.expire_leases(others)
            node.campaign()
            self.stabilize(which)
        assert self.node(member).role is Role.LEADER, f"{member} could not be elected"

    def compact(self, member: str) -> Snapshot:
        """Snapshot `member`'s applied state and compact its log (thesis 5.1)."""
        index = self.applied_index[member]
        snap = self.node(member).create_snapshot(index, encode_state(self.state[member]))
        self.stores[member].write_snapshot(snap, discard_log=False)
        return snap

    # -- inspection ------------------------------------------------------------------------

    def log(self, member: str) -> list[tuple[int, int, bytes]]:
        return [(e.index, e.term, e.data) for e in self.node(member).log_entries()]

    def commit(self, member: str) -> int:
        return self.node(member).status().commit

    def values(self, member: str) -> list[bytes]:
        return [data for _, data in self.state[member]]

    def sent_of(self, kind: type[M], src: str | None = None, dst: str | None = None) -> list[M]:
        return [
            m
            for m in self.sent
            if isinstance(m, kind)
            and (src is None or m.src == src)
            and (dst is None or m.dst == dst)
        ]
