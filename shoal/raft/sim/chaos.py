"""One seeded simulation: a fault phase (loss, duplication, delay, partitions, crashes,
snapshots, membership changes, leadership transfers, clients writing and reading), then a
healed phase in which a leader must emerge and new writes must commit within a bound.

`simulate(seed, members)` returns a `SimResult`; a violation carries the one-line command
that replays it exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..errors import ProposalRejected
from ..options import RaftConfig
from ..types import ConfChangeOp
from .checker import Violation
from .cluster import SimCluster, Trace, encode_state


@dataclass(frozen=True, slots=True)
class ChaosProfile:
    fault_ticks: int = 250
    liveness_ticks: int = 120  # bound on electing a leader and committing after healing
    loss: float = 0.05
    duplicate: float = 0.03
    crash: float = 0.02  # per tick, one random member
    restart: float = 0.15  # per tick, per crashed member
    partition: float = 0.015
    heal: float = 0.06
    clients: int = 3
    write: float = 0.6  # per tick, per idle client
    read: float = 0.25
    snapshot: float = 0.03
    membership: float = 0.012
    transfer: float = 0.01


@dataclass(slots=True)
class SimResult:
    seed: int
    members: int
    violation: str | None = None
    ticks: int = 0
    acked_writes: int = 0
    reads_checked: int = 0
    leaders: int = 0
    messages: int = 0
    recovery_ticks: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.violation is None

    def replay_command(self, bug: str | None = None) -> str:
        extra = f" --inject-bug {bug}" if bug else ""
        return f"python -m shoal.raft.sim --seed {self.seed} --members {self.members}{extra}"


class Chaos:
    def __init__(self, cluster: SimCluster, profile: ChaosProfile) -> None:
        self.c = cluster
        self.p = profile
        self.rng = cluster.rng
        self._value_seq = 0

    def fault_step(self) -> None:
        c, p, rng = self.c, self.p, self.rng
        ids = sorted(c.members)
        if rng.random() < p.crash:
            live = [m.id for m in c.live()]
            if live:
                victim = rng.choice(live)
                if rng.random() < 0.5:
                    c.members[victim].crash_armed = True  # mid-Ready, losing unpersisted work
                else:
                    c.crash(victim)
        for member in sorted(c.members.values(), key=lambda m: m.id):
            if member.node is None and rng.random() < p.restart:
                c.restart(member.id)
        if rng.random() < p.partition:
            self._partition(ids)
        elif c.net.blocked and rng.random() < p.heal:
            c.net.heal()
            c.trace("network healed")
        if rng.random() < p.snapshot:
            self._snapshot()
        if rng.random() < p.membership:
            self._change_membership()
        if rng.random() < p.transfer:
            self._transfer()
        self.client_step()

    def client_step(self) -> None:
        c, rng = self.c, self.rng
        live = [m.id for m in c.live()]
        if not live:
            return
        for k in range(self.p.clients):
            client = f"c{k}"
            if client in c.writes or rng.random() >= self.p.write:
                continue
            self._value_seq += 1
            value = f"{client}-{self._value_seq}".encode()
            target = self._guess_leader(rng.choice(live))
            c.propose(client, value, target)
        if rng.random() < self.p.read:
            c.read(rng.choice(live))

    def _guess_leader(self, asked: str) -> str:
        node = self.c.members[asked].node
        hint = node.leader if node is not None else None
        if hint is not None and hint in self.c.members:
            return hint
        return asked

    def _partition(self, ids: list[str]) -> None:
        c, rng = self.c, self.rng
        if rng.random() < 0.7:
            shuffled = ids[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(ids) - 1)
            groups = [sorted(shuffled[:cut]), sorted(shuffled[cut:])]
            c.net.partition(groups)
            c.trace(f"partition {groups[0]} | {groups[1]}")
        else:
            src, dst = rng.sample(ids, 2)
            c.net.cut_one_way(src, dst)
            c.trace(f"one-way cut {src} -> {dst}")

    def _snapshot(self) -> None:
        c = self.c
        candidates = [m for m in c.live() if m.node and m.applied > m.node.snapshot.index + 3]
        if not candidates:
            return
        member = self.rng.choice(candidates)
        assert member.node is not None
        snap = member.node.create_snapshot(member.applied, encode_state(member.state))
        member.store.write_snapshot(snap, discard_log=False)

    def _change_membership(self) -> None:
        c, rng = self.c, self.rng
        leader = c.leader()
        if leader is None or leader.node is None:
            return
        node = leader.node
        conf = node.conf
        voters, learners = sorted(conf.voters), sorted(conf.learners)
        target = c.members_target
        choices: list[tuple[ConfChangeOp, str]] = []
        if learners:
            choices.append((ConfChangeOp.ADD_VOTER, rng.choice(learners)))
            choices.append((ConfChangeOp.REMOVE, rng.choice(learners)))
        if len(voters) > target - 1 and len(voters) > 1:
            choices.append((ConfChangeOp.REMOVE, rng.choice(voters)))
        if len(voters) + len(learners) < target + 1:
            choices.append((ConfChangeOp.ADD_LEARNER, ""))
        if not choices:
            return
        op, who = rng.choice(choices)
        if op is ConfChangeOp.ADD_LEARNER:
            who = c.spawn_member()
        try:
            node.propose_conf_change(op, who)
            c.trace(f"{leader.id} proposed {op.value} {who}")
        except ProposalRejected:
            return
        c._drive(leader)

    def _transfer(self) -> None:
        leader = self.c.leader()
        if leader is None or leader.node is None:
            return
        others = sorted(v for v in leader.node.conf.voters if v != leader.id)
        if not others:
            return
        to = self.rng.choice(others)
        try:
            leader.node.transfer_leadership(to)
        except ProposalRejected:
            return
        self.c.trace(f"{leader.id} transfers leadership to {to}")
        self.c._drive(leader)

    # -- after the faults stop ----------------------------------------------------------

    def heal_everything(self) -> None:
        c = self.c
        c.net.heal()
        c.net.faults.loss = 0.0
        c.net.faults.duplicate = 0.0
        for member in sorted(c.members.values(), key=lambda m: m.id):
            member.crash_armed = False
            c.restart(member.id)
        c.trace("faults stopped: network healed, every member running")

    def await_liveness(self) -> int:
        """Ticks until a leader commits a fresh write on every voter; raises past the bound."""
        c = self.c
        probe = b"probe"
        proposed_at: int | None = None
        for elapsed in range(1, self.p.liveness_ticks + 1):
            c.step_tick()
            leader = c.leader()
            if leader is None or leader.node is None:
                continue
            idle = "probe" not in c.writes and probe not in c.checker.acked
            if idle and c.propose("probe", probe, leader.id):
                proposed_at = elapsed
            if probe in c.checker.acked and self._all_caught_up():
                return elapsed
        where = "no leader" if c.leader() is None else f"probe proposed at {proposed_at}"
        raise Violation(
            f"liveness: no stable progress {self.p.liveness_ticks} ticks after healing ({where})"
        )

    def _all_caught_up(self) -> bool:
        leader = self.c.leader()
        assert leader is not None and leader.node is not None
        commit = leader.node.status().commit
        return all(
            self.c.members[v].node is not None and self.c.members[v].applied >= commit
            for v in leader.node.conf.voters
        )


def simulate(
    seed: int,
    members: int,
    profile: ChaosProfile | None = None,
    trace: Trace | None = None,
) -> SimResult:
    profile = profile or ChaosProfile()
    # Each seed draws its own flow-control limits and network weather, so seeds differ in
    # kind, not just in luck: one-entry appends and a window of one expose bugs that big
    # batches hide.
    draw = random.Random(seed)
    entry_bytes = draw.choice([1, 40, 1 << 20])
    inflight = draw.choice([1, 3, 256])
    election = draw.choice([6, 10])

    def config(member_id: str) -> RaftConfig:
        return RaftConfig(
            id=member_id,
            election_ticks=election,
            max_msg_bytes=entry_bytes,
            max_inflight=inflight,
        )

    cluster = SimCluster(seed, members, config=config, trace=trace)
    chaos = Chaos(cluster, profile)
    cluster.net.faults.loss = profile.loss * draw.uniform(0, 2)
    cluster.net.faults.duplicate = profile.duplicate * draw.uniform(0, 2)
    result = SimResult(seed=seed, members=members)
    try:
        cluster.run_ticks(profile.fault_ticks, chaos.fault_step)
        chaos.heal_everything()
        result.recovery_ticks = chaos.await_liveness()
        cluster.check_converged()
    except Violation as violation:
        result.violation = str(violation)
    except Exception as error:
        # The core (or the simulator) tripped over its own invariant: as much a violation
        # as a wrong answer, and it must name the seed rather than abort the whole run.
        result.violation = f"internal error: {type(error).__name__}: {error}"
    result.ticks = cluster.tick_count
    result.acked_writes = cluster.acked_writes
    result.reads_checked = cluster.checker.reads_checked
    result.leaders = len(cluster.checker.leaders)
    result.messages = cluster.net.sent
    return result
