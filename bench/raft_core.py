"""Committed proposals per second through the Raft core alone.

Three `RawNode`s in one process, wired by a deque: no disk, no network, no simulator
randomness. What comes out is the ceiling the core itself sets before any I/O is added.

The driver follows the `RawNode` contract (see shoal/raft/rawnode.py) as tightly as it
can: for each member with `has_ready()`, take the `Ready`, queue `messages`, "persist"
(keep references to `entries` and `hard_state`), queue `persisted_messages`, apply
`committed_entries`, `advance`. Queued messages are then delivered with `step`. One pass
over the members plus one delivery of the queue is a *round*; the leader ticks every
`TICK_EVERY_ROUNDS` rounds so heartbeats and the CheckQuorum bookkeeping keep flowing.

Two workloads, timed in the same invocation so the figure comes with a reference:

* batched: the leader proposes `propose_many` batches (64 and 256 entries), then pumps
  until the cluster is quiet -- what the asyncio driver does when many clients write;
* unbatched (the reference): one `propose()` per entry, pumping until quiet after each.

Each repetition builds a fresh cluster, elects n1, and times only the proposals. At the
end every member must have applied every proposal, or the benchmark fails instead of
printing a number.

    .venv/bin/python -m bench.raft_core            # the full run (~1 min on 2 slow cores)
    .venv/bin/python -m bench.raft_core --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from shoal.raft import ConfState, Entry, HardState, Message, RaftConfig, RawNode, Role, Snapshot

PAYLOAD_BYTES = 64
TICK_EVERY_ROUNDS = 20
MEMBERS = 3
HEADLINE_BATCH = 256


@dataclass(slots=True)
class Member:
    """One member: its node and what the driver did with its Readys."""

    node: RawNode
    # "Durable storage": references to each Ready's entries tuple and the last hard state.
    stored: list[tuple[Entry, ...]] = field(default_factory=list)
    stored_last: int = 0
    hard_state: HardState = field(default_factory=HardState)
    applied_index: int = 0
    applied_data: int = 0  # committed entries with data (proposals), in order


class Cluster:
    """Three in-memory members and the pump that drives them."""

    def __init__(self, members: int = MEMBERS) -> None:
        ids = [f"n{i + 1}" for i in range(members)]
        conf = ConfState(voters=frozenset(ids))
        self.members: dict[str, Member] = {
            member_id: Member(
                RawNode(RaftConfig(id=member_id), random.Random(i), snapshot=Snapshot(conf=conf))
            )
            for i, member_id in enumerate(ids)
        }
        self.order: list[Member] = list(self.members.values())
        self.queue: deque[Message] = deque()
        self.rounds = 0
        self.leader = self.members[ids[0]]
        self.leader.node.campaign()
        self.pump()
        if self.leader.node.role is not Role.LEADER:
            raise RuntimeError(f"n1 did not become leader: {self.leader.node.status()}")
        self.base_index = self.leader.applied_index  # the new leader's no-op is here

    def pump(self) -> None:
        """Run rounds until no member has a Ready and no message is in flight."""
        members = self.members
        order = self.order
        queue = self.queue
        leader_node = self.leader.node
        while True:
            busy = False
            for member in order:
                node = member.node
                while node.has_ready():
                    busy = True
                    rd = node.ready()
                    queue.extend(rd.messages)
                    if rd.entries:
                        first = rd.entries[0].index
                        if first != member.stored_last + 1:
                            raise AssertionError(
                                f"{node.id}: log rewrite at {first} (stored {member.stored_last})"
                            )
                        member.stored.append(rd.entries)
                        member.stored_last = rd.entries[-1].index
                    if rd.hard_state is not None:
                        member.hard_state = rd.hard_state
                    queue.extend(rd.persisted_messages)
                    committed = rd.committed_entries
                    if committed:
                        applied = 0
                        for entry in committed:
                            if entry.data:
                                applied += 1
                        member.applied_data += applied
                        member.applied_index = committed[-1].index
                    node.advance(rd)
            if not queue:
                if not busy:
                    return
            else:
                while queue:
                    m = queue.popleft()
                    members[m.dst].node.step(m)
            self.rounds += 1
            if self.rounds % TICK_EVERY_ROUNDS == 0:
                leader_node.tick()

    def verify(self, proposals: int) -> None:
        """Every member persisted, committed and applied exactly the proposals made."""
        last = self.base_index + proposals
        for member in self.order:
            node = member.node
            status = node.status()
            _check(member.applied_data == proposals, node.id, "applied proposals", proposals)
            _check(member.applied_index == last, node.id, "applied index", last)
            _check(status.commit == last and status.applied == last, node.id, "status", status)
            _check(member.stored_last == last, node.id, "stored log end", last)
            _check(member.hard_state.commit == last, node.id, "durable commit", last)
        _check(self.leader.node.role is Role.LEADER, "n1", "still leader", True)
        _check(not self.queue, "driver", "empty queue", True)


def _check(ok: bool, who: str, what: str, expected: object) -> None:
    """An assert that `python -O` cannot strip: a broken run must never print a number."""
    if not ok:
        raise AssertionError(f"{who}: {what} wrong, expected {expected!r}")


def run_once(proposals: int, batch: int) -> float:
    """Commit `proposals` entries in batches of `batch` (1 = `propose`); returns seconds."""
    if proposals % batch:
        raise ValueError(f"{proposals} proposals is not a whole number of {batch}-batches")
    payloads = [i.to_bytes(8, "big") * (PAYLOAD_BYTES // 8) for i in range(batch)]
    cluster = Cluster()
    leader = cluster.leader
    node = leader.node
    pump = cluster.pump
    target = leader.applied_data + proposals
    gc.collect()
    start = time.perf_counter()
    if batch == 1:
        payload = payloads[0]
        propose = node.propose
        while leader.applied_data < target:
            propose(payload)
            pump()
    else:
        propose_many = node.propose_many
        while leader.applied_data < target:
            propose_many(payloads)
            pump()
    elapsed = time.perf_counter() - start
    cluster.verify(proposals)
    return elapsed


@dataclass(frozen=True, slots=True)
class Result:
    label: str
    batch: int
    proposals: int
    seconds: list[float]

    @property
    def rates(self) -> list[float]:
        return [self.proposals / s for s in self.seconds]

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def per_entry_us(self) -> float:
        return 1e6 / self.median_rate


def measure(label: str, batch: int, proposals: int, repeats: int) -> Result:
    run_once(min(proposals, batch * 20), batch)  # warm up: imports, caches, allocator
    seconds = [run_once(proposals, batch) for _ in range(repeats)]
    return Result(label, batch, proposals, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raft_core", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer proposals, for smoke runs")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions per configuration")
    args = parser.parse_args(argv)

    batched_n, unbatched_n = (12_800, 2_000) if args.quick else (204_800, 20_000)
    repeats = min(args.repeats, 3) if args.quick else args.repeats
    print(
        f"raft core: {MEMBERS} members in memory, {PAYLOAD_BYTES}-byte payloads, "
        f"leader ticks every {TICK_EVERY_ROUNDS} rounds, median of {repeats}"
        + (" (--quick)" if args.quick else ""),
        flush=True,
    )
    reference = measure("unbatched (ref)", 1, unbatched_n, repeats)
    results = [measure(f"batch {b}", b, batched_n, repeats) for b in (64, HEADLINE_BATCH)]
    results.append(reference)

    header = (
        f"{'configuration':<16} {'proposals':>10} {'median/s':>12} {'min/s':>12} "
        f"{'max/s':>12} {'us/entry':>9} {'vs ref':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.label:<16} {r.proposals:>10,} {r.median_rate:>12,.0f} {min(r.rates):>12,.0f} "
            f"{max(r.rates):>12,.0f} {r.per_entry_us:>9.2f} "
            f"{r.median_rate / reference.median_rate:>6.1f}x"
        )
    headline = next(r for r in results if r.batch == HEADLINE_BATCH)
    print(
        f"raft core, {MEMBERS} members, batch {HEADLINE_BATCH}: "
        f"{headline.median_rate:,.0f} proposals/s (median of {repeats}), "
        f"{headline.median_rate / reference.median_rate:.1f}x the unbatched reference"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
