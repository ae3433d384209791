"""Scripted interactions with Raft members, one command at a time, printing what happens.

The Python counterpart of etcd-io/raft's `rafttest.InteractionEnv`: a test file in
tests/raft/testdata/ is a list of commands (see datadriven.py for the format), and each
command's output is the text of what the members did -- the Readys they produced, the
messages delivered, and the changes of role, leader, configuration and (at `debug`)
replication progress that each input caused. The text comes from `shoal.raft.describe`,
so it is deterministic and a golden file pins the protocol's behaviour exactly.

Theory of operation. Members are `RawNode`s driven exactly by the Ready contract (send
`messages`, persist into a `DurableStore`, send `persisted_messages`, apply, `advance`),
as tests/raft/harness.py and the simulator drive them. Nothing moves unless a command
says so: sent messages wait in one queue, in send order, until `deliver-msgs` or
`stabilize` hands them to their recipient; time passes only through `tick-*`. Each
member's RNG is seeded from its id and restart count, so every run is the same. A
`SafetyChecker` watches every persisted, applied and leading member, so a scenario that
breaks a safety property fails with `Violation` instead of producing a transcript.

The core logs nothing, so the events printed (`INFO n2 became leader at term 2`) are
derived by comparing what a member shows before and after each input.

Commands (member ids are as printed: n1, n2, ...):

    add-nodes N [voters=(ids)] [learners=(ids)] [pre-vote=true] [check-quorum=true]
              [election=10] [heartbeat=1] [max-msg-bytes=N] [max-inflight=N]
        start N new members n<k>; with voters/learners they start a new cluster with
        that configuration, without them they start empty, to be added later
    campaign ID                       start an election now
    propose ID DATA                   propose one entry
    propose-conf-change ID add-voter=X | add-learner=X | remove=X
    transfer-leadership from=ID to=ID
    read-index ID CONTEXT             ask for a linearizable read
    tick-heartbeat ID... / tick-election ID... / tick ID... count=N
    deliver-msgs ID... [drop=(ids)] [type=Name] [from=ID]
        deliver (or drop) the queued messages to those members, in order; messages
        they cause stay queued
    process-ready ID...               handle one Ready of each
    stabilize [ID...]                 handle Readys and deliver messages among these
                                      members (all by default) until nothing moves
    compact ID [index=N]              snapshot the applied state, compact the log
    crash ID / restart ID             lose what is not persisted / start from the store
    report-unreachable ID PEER
    raft-state / status ID / raft-log ID
    log-level none|info|debug         none prints only errors (handy for setup)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from shoal.raft.describe import (
    describe_conf,
    describe_entry,
    describe_message,
    describe_ready,
    describe_snapshot,
    describe_status,
)
from shoal.raft.errors import RaftError
from shoal.raft.messages import MESSAGE_TYPES, Message
from shoal.raft.options import RaftConfig
from shoal.raft.rawnode import RawNode, Ready
from shoal.raft.sim.checker import SafetyChecker
from shoal.raft.sim.cluster import DurableStore, decode_state, encode_state
from shoal.raft.types import ConfChangeOp, ConfState, Role, Snapshot

from .datadriven import Case, FormatError

LEVELS = {"debug": 0, "info": 1, "none": 2}
MAX_STABILIZE_ROUNDS = 1000
_MESSAGE_TYPES = {t.__name__: t for t in MESSAGE_TYPES}
_CONF_OPS = {op.value: op for op in ConfChangeOp}
# The key=value options each command takes; any other is a typo in the test file.
_OPTIONS: dict[str, frozenset[str]] = {
    "add-nodes": frozenset(
        {"voters", "learners", "pre-vote", "check-quorum", "election", "heartbeat"}
        | {"max-msg-bytes", "max-inflight"}
    ),
    "propose-conf-change": frozenset(_CONF_OPS),
    "transfer-leadership": frozenset({"from", "to"}),
    "tick": frozenset({"count"}),
    "deliver-msgs": frozenset({"drop", "type", "from"}),
    "compact": frozenset({"index"}),
}


@dataclass(slots=True)
class Member:
    id: str
    config: RaftConfig
    store: DurableStore
    node: RawNode | None = None
    restarts: int = 0
    state: list[tuple[int, bytes]] = field(default_factory=list)  # applied writes
    applied: int = 0


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a member shows from outside, compared before and after each input."""

    role: Role
    term: int
    leader: str | None
    transferee: str | None
    conf: ConfState
    progress: tuple[tuple[str, str, int, int], ...]


def _facts(node: RawNode) -> _Facts:
    st = node.status()
    progress = tuple(
        (peer, pr.state.value, pr.match, pr.next) for peer, pr in sorted(st.progress.items())
    )
    return _Facts(node.role, node.term, node.leader, node.transferee, node.conf, progress)


def _role_text(f: _Facts) -> str:
    if f.role is Role.FOLLOWER and f.leader is not None:
        return f"follower of {f.leader} at term {f.term}"
    return f"{f.role.value} at term {f.term}"


def _bool(value: str | None, default: bool, where: str) -> bool:
    if value is None:
        return default
    if value not in ("true", "false"):
        raise FormatError(f"{where}: expected true or false, got {value!r}")
    return value == "true"


def _int(value: str | None, default: int, where: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise FormatError(f"{where}: expected a number, got {value!r}") from None


class InteractionEnv:
    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.messages: list[Message] = []  # sent, not yet delivered, in send order
        self.checker = SafetyChecker()
        self.level = LEVELS["info"]
        self._out: list[str] = []
        self._indent = ""
        self._handlers: dict[str, Callable[[Case], None]] = {
            "add-nodes": self._add_nodes,
            "campaign": self._campaign,
            "propose": self._propose,
            "propose-conf-change": self._propose_conf_change,
            "transfer-leadership": self._transfer_leadership,
            "read-index": self._read_index,
            "tick": self._tick,
            "tick-heartbeat": self._tick_heartbeat,
            "tick-election": self._tick_election,
            "deliver-msgs": self._deliver_msgs,
            "process-ready": self._process_ready,
            "stabilize": self._stabilize,
            "compact": self._compact,
            "crash": self._crash,
            "restart": self._restart,
            "report-unreachable": self._report_unreachable,
            "raft-state": self._raft_state,
            "status": self._status,
            "raft-log": self._raft_log,
            "log-level": self._log_level,
        }

    # -- the entry point ----------------------------------------------------------------

    def handle(self, case: Case) -> str:
        """Run one command; its output, or "ok" when it printed nothing."""
        handler = self._handlers.get(case.command)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            raise FormatError(f"{case.where}: unknown command {case.command!r} (known: {known})")
        allowed = _OPTIONS.get(case.command, frozenset())
        unknown = sorted({a.key for a in case.args if a.values} - allowed)
        if unknown:
            takes = ", ".join(sorted(allowed)) or "none"
            raise FormatError(f"{case.where}: {case.command} does not take {unknown} ({takes})")
        self._out, self._indent = [], ""
        handler(case)
        return "\n".join(self._out) if self._out else "ok"

    # -- output -------------------------------------------------------------------------

    def _write(self, text: str, level: str = "info") -> None:
        if LEVELS[level] >= self.level:
            self._out.extend(self._indent + line for line in text.split("\n"))

    def _error(self, text: str) -> None:
        self._out.append(self._indent + text)  # errors show at every level

    @contextmanager
    def _indented(self) -> Iterator[None]:
        outer = self._indent
        self._indent = outer + "  "
        try:
            yield
        finally:
            self._indent = outer

    # -- members ------------------------------------------------------------------------

    def _ids(self, case: Case, *, at_least: int = 1) -> list[str]:
        ids = case.positional
        if len(ids) < at_least:
            raise FormatError(f"{case.where}: {case.command} needs a member id")
        return self._known(case, ids)

    def _known(self, case: Case, ids: list[str]) -> list[str]:
        for member in ids:
            if member not in self.members:
                raise FormatError(f"{case.where}: no member {member!r}")
        return ids

    def _node(self, member: str) -> RawNode | None:
        node = self.members[member].node
        if node is None:
            self._error(f"{member} is down")
        return node

    def _start(self, m: Member) -> None:
        store = m.store
        m.node = RawNode(
            m.config,
            random.Random(f"{m.id}/{m.restarts}"),
            hard_state=store.hard_state,
            snapshot=store.snapshot,
            entries=list(store.entries),
        )
        m.state = decode_state(store.snapshot.data)
        m.applied = store.snapshot.index
        self.checker.on_restart(m.id, store.snapshot.index)

    def _observe(self, member: str, action: Callable[[], object]) -> None:
        """Run one input into `member`, then print what changed on it; a rejected request
        prints its error (requests raise, peers' messages never do)."""
        node = self.members[member].node
        assert node is not None
        before = _facts(node)
        try:
            action()
        except RaftError as e:
            self._error(f"error: {type(e).__name__}: {e}")
        self._report_changes(member, before, _facts(node))

    def _report_changes(self, member: str, before: _Facts, after: _Facts) -> None:
        if (before.role, before.term, before.leader) != (after.role, after.term, after.leader):
            self._write(f"INFO {member} became {_role_text(after)}")
            if after.role is Role.LEADER and before.role is not Role.LEADER:
                node = self.members[member].node
                assert node is not None
                terms = {e.index: e.term for e in node.log_entries()}
                self.checker.on_leader(member, node.term, terms, node.snapshot.index + 1)
        if before.conf != after.conf:
            self._write(f"INFO {member} switched to {describe_conf(after.conf)}")
        if before.transferee != after.transferee:
            if after.transferee is not None:
                self._write(f"INFO {member} is transferring leadership to {after.transferee}")
            else:
                self._write(f"INFO {member} stopped transferring leadership to {before.transferee}")
        if before.progress != after.progress:
            old = {p[0]: p for p in before.progress}
            for peer, state, match, next_ in after.progress:
                if old.get(peer) != (peer, state, match, next_):
                    self._write(
                        f"DEBUG {member} sees {peer} {state} match={match} next={next_}", "debug"
                    )

    # -- the driver: one Ready, one delivery --------------------------------------------

    def _send(self, messages: tuple[Message, ...]) -> None:
        self.messages.extend(messages)

    def _handle_ready(self, member: str) -> None:
        m = self.members[member]
        node = m.node
        assert node is not None
        if not node.has_ready():
            self._write("no Ready")
            return
        rd = node.ready()
        self._write(describe_ready(rd))
        self._send(rd.messages)
        self._persist(m, rd)
        self._send(rd.persisted_messages)
        self._apply(m, rd)
        self._observe(member, lambda: node.advance(rd))

    def _persist(self, m: Member, rd: Ready) -> None:
        store = m.store
        if rd.snapshot is not None:
            store.write_snapshot(rd.snapshot, discard_log=True)
        if rd.entries:
            prev_term = store.term_at(rd.entries[0].index - 1)
            store.write_entries(rd.entries)
            self.checker.on_persist(m.id, rd.entries, prev_term)
        if rd.hard_state is not None:
            store.hard_state = rd.hard_state

    def _apply(self, m: Member, rd: Ready) -> None:
        if rd.snapshot is not None:
            m.state = decode_state(rd.snapshot.data)
            m.applied = rd.snapshot.index
            self.checker.on_restore(m.id, rd.snapshot, m.state)
        for entry in rd.committed_entries:
            self.checker.on_apply(m.id, entry)
            m.applied = entry.index
            if entry.data:
                m.state.append((entry.index, entry.data))

    def _deliver(
        self, to: str, *, drop: bool = False, kind: type[Message] | None = None, src: str = ""
    ) -> int:
        """Step (or drop) every queued message to `to` that matches; how many there were."""
        chosen = [
            msg
            for msg in self.messages
            if msg.dst == to and (kind is None or type(msg) is kind) and (not src or msg.src == src)
        ]
        if not chosen:
            return 0
        picked = {id(msg) for msg in chosen}
        self.messages = [msg for msg in self.messages if id(msg) not in picked]
        member = self.members.get(to)
        for msg in chosen:
            if drop:
                self._write(f"dropped: {describe_message(msg)}")
            elif member is None or member.node is None:
                why = "no such member" if member is None else f"{to} is down"
                self._write(f"dropped ({why}): {describe_message(msg)}")
            else:
                self._write(describe_message(msg))
                self._observe(to, partial(member.node.step, msg))
        return len(chosen)

    # -- commands: members ---------------------------------------------------------------

    def _add_nodes(self, case: Case) -> None:
        where = case.where
        if not case.positional:
            raise FormatError(f"{where}: add-nodes needs a count")
        count = _int(case.positional[0], 0, where)
        voters, learners = frozenset(case.options("voters")), frozenset(case.options("learners"))
        first = len(self.members) + 1
        for k in range(first, first + count):
            member = f"n{k}"
            config = RaftConfig(
                id=member,
                election_ticks=_int(case.option("election"), 10, where),
                heartbeat_ticks=_int(case.option("heartbeat"), 1, where),
                pre_vote=_bool(case.option("pre-vote"), True, where),
                check_quorum=_bool(case.option("check-quorum"), True, where),
                max_msg_bytes=_int(case.option("max-msg-bytes"), 1 << 20, where),
                max_inflight=_int(case.option("max-inflight"), 256, where),
            )
            store = DurableStore()
            if voters or learners:
                store.snapshot = Snapshot(conf=ConfState(voters=voters, learners=learners))
            m = Member(member, config, store)
            self.members[member] = m
            self._start(m)
            if voters or learners:
                self._write(f"INFO {member} starts with {describe_conf(store.snapshot.conf)}")
            else:
                self._write(f"INFO {member} starts empty, to be added to a cluster")

    def _crash(self, case: Case) -> None:
        for member in self._ids(case):
            self.members[member].node = None
            self._write(f"INFO {member} crashed: what it had not persisted is lost")

    def _restart(self, case: Case) -> None:
        for member in self._ids(case):
            m = self.members[member]
            m.node = None
            m.restarts += 1
            self._start(m)
            node = m.node
            assert node is not None
            st = node.status()
            self._write(
                f"INFO {member} restarted at term {st.term} with commit={st.commit} "
                f"last={st.last_index}"
            )

    def _compact(self, case: Case) -> None:
        (member,) = self._ids(case)
        node = self._node(member)
        if node is None:
            return
        m = self.members[member]
        index = _int(case.option("index"), m.applied, case.where)
        state = [(i, data) for i, data in m.state if i <= index]
        try:
            snap = node.create_snapshot(index, encode_state(state))
        except (RaftError, ValueError) as e:
            self._error(f"error: {type(e).__name__}: {e}")
            return
        m.store.write_snapshot(snap, discard_log=False)
        self._write(f"INFO {member} compacted its log into snapshot {describe_snapshot(snap)}")

    # -- commands: requests -------------------------------------------------------------

    def _campaign(self, case: Case) -> None:
        for member in self._ids(case):
            node = self._node(member)
            if node is not None:
                self._observe(member, node.campaign)

    def _propose(self, case: Case) -> None:
        ids = case.positional
        if len(ids) != 2:
            raise FormatError(f"{case.where}: propose ID DATA")
        member, data = ids
        self._known(case, [member])
        node = self._node(member)
        if node is not None:
            self._observe(member, lambda: node.propose(data.encode()))

    def _propose_conf_change(self, case: Case) -> None:
        (member,) = self._ids(case)
        changes = [(a.key, a.values) for a in case.args if a.values and a.key in _CONF_OPS]
        if len(changes) != 1 or len(changes[0][1]) != 1:
            ops = ", ".join(f"{op}=ID" for op in _CONF_OPS)
            raise FormatError(f"{case.where}: propose-conf-change ID takes one of {ops}")
        op, (target,) = changes[0]
        node = self._node(member)
        if node is not None:
            self._observe(member, lambda: node.propose_conf_change(_CONF_OPS[op], target))

    def _transfer_leadership(self, case: Case) -> None:
        src, dst = case.option("from"), case.option("to")
        if src is None or dst is None:
            raise FormatError(f"{case.where}: transfer-leadership from=ID to=ID")
        self._known(case, [src])
        node = self._node(src)
        if node is not None:
            self._observe(src, lambda: node.transfer_leadership(dst))

    def _read_index(self, case: Case) -> None:
        ids = case.positional
        if len(ids) != 2:
            raise FormatError(f"{case.where}: read-index ID CONTEXT")
        member, context = ids
        self._known(case, [member])
        node = self._node(member)
        if node is not None:
            self._observe(member, lambda: node.read_index(context.encode()))

    def _report_unreachable(self, case: Case) -> None:
        ids = case.positional
        if len(ids) != 2:
            raise FormatError(f"{case.where}: report-unreachable ID PEER")
        self._known(case, ids[:1])
        node = self._node(ids[0])
        if node is not None:
            self._observe(ids[0], lambda: node.report_unreachable(ids[1]))

    # -- commands: time -----------------------------------------------------------------

    def _tick_n(self, case: Case, ticks: Callable[[Member], int]) -> None:
        for member in self._ids(case):
            node = self._node(member)
            if node is None:
                continue
            for _ in range(ticks(self.members[member])):
                self._observe(member, node.tick)

    def _tick(self, case: Case) -> None:
        count = _int(case.option("count"), 1, case.where)
        self._tick_n(case, lambda m: count)

    def _tick_heartbeat(self, case: Case) -> None:
        self._tick_n(case, lambda m: m.config.heartbeat_ticks)

    def _tick_election(self, case: Case) -> None:
        self._tick_n(case, lambda m: m.config.election_ticks)

    # -- commands: the network and the driver -------------------------------------------

    def _deliver_msgs(self, case: Case) -> None:
        kind_name = case.option("type")
        kind = None
        if kind_name is not None:
            kind = _MESSAGE_TYPES.get(kind_name)
            if kind is None:
                known = ", ".join(sorted(_MESSAGE_TYPES))
                raise FormatError(f"{case.where}: unknown message type {kind_name!r} ({known})")
        src = case.option("from") or ""
        ids, dropped = case.positional, case.options("drop")
        if not ids and not dropped:
            raise FormatError(f"{case.where}: deliver-msgs needs recipients or drop=(ids)")
        n = 0
        for member in ids:
            n += self._deliver(member, kind=kind, src=src)
        for member in dropped:
            n += self._deliver(member, drop=True, kind=kind, src=src)
        if n == 0:
            self._write("no messages")

    def _process_ready(self, case: Case) -> None:
        ids = self._ids(case)
        for member in ids:
            if self._node(member) is None:
                continue
            if len(ids) == 1:
                self._handle_ready(member)
                continue
            self._write(f"> {member} handling Ready")
            with self._indented():
                self._handle_ready(member)

    def _stabilize(self, case: Case) -> None:
        ids = self._ids(case, at_least=0) or list(self.members)
        for _ in range(MAX_STABILIZE_ROUNDS):
            done = True
            for member in ids:
                node = self.members[member].node
                if node is not None and node.has_ready():
                    done = False
                    self._write(f"> {member} handling Ready")
                    with self._indented():
                        self._handle_ready(member)
            for member in ids:
                if any(msg.dst == member for msg in self.messages):
                    done = False
                    self._write(f"> {member} receiving messages")
                    with self._indented():
                        self._deliver(member)
            if done:
                return
        raise AssertionError(f"{case.where}: no fixed point after {MAX_STABILIZE_ROUNDS} rounds")

    # -- commands: inspection -----------------------------------------------------------

    def _raft_state(self, case: Case) -> None:
        for member, m in self.members.items():
            if m.node is None:
                self._write(f"{member}: down")
                continue
            node = m.node
            kind = "voter" if member in node.conf.voters else "learner"
            if member not in node.conf.members:
                kind = "not a member"
            self._write(
                f"{member}: {node.role.value} term={node.term} leader={node.leader or 'none'} "
                f"({kind})"
            )

    def _status(self, case: Case) -> None:
        for member in self._ids(case):
            node = self._node(member)
            if node is not None:
                self._write(describe_status(node.status()))

    def _raft_log(self, case: Case) -> None:
        for member in self._ids(case):
            node = self._node(member)
            if node is None:
                continue
            snap = node.snapshot
            if snap.index:
                self._write(f"snapshot {describe_snapshot(snap)}")
            entries = node.log_entries()
            for entry in entries:
                self._write(describe_entry(entry))
            if not entries and not snap.index:
                self._write("log is empty")

    def _log_level(self, case: Case) -> None:
        (name,) = case.positional or (None,)
        if name not in LEVELS:
            raise FormatError(f"{case.where}: log-level takes one of {', '.join(LEVELS)}")
        self.level = LEVELS[name]
