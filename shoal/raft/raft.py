"""The Raft protocol for one member: elections, replication, membership, reads. No I/O.

Theory of operation. All input arrives through four doors: `step(message)` for peers,
`tick()` for time, and the leader-only requests (`propose*`, `propose_conf_change`,
`transfer_leadership`, `read_index`). Output accumulates in `msgs` and `read_states`, and
in the log's unstable entries and commit index; `RawNode` packages it as a `Ready`.

Rules it keeps (section numbers are Ongaro's thesis, "Consensus: Bridging Theory and
Practice", 2014):

- A message from a higher term makes us a follower of that term first (3.3), except a
  PreVote and its grant, which never change terms (9.6), and a vote request that arrives
  while we still hear from a leader under CheckQuorum, which is ignored (4.2.3).
- A vote goes to a candidate whose log is at least as up to date (3.6.1), once per term.
- A leader commits only entries of its own term by counting replicas (3.6.2); it appends a
  no-op on election so that happens promptly, and counts itself only for entries the
  driver has made durable (10.2.1).
- Membership changes one member at a time (4.1): a configuration is in force as soon as
  its entry is in a member's log, one change may be uncommitted at a time, and a leader
  proposes none before it has committed an entry of its own term (the fix to the
  single-server change bug, 2015). A leader removed from the voters steps down when
  the change commits (4.2.2).
- Leadership transfer (3.10): catch the target up, send TimeoutNow, refuse proposals
  meanwhile, give up after an election timeout.
- ReadIndex (6.4): record the commit index, confirm leadership with a heartbeat round
  from a quorum, then release the read; never before the leader has committed an entry
  of its own term.
- A moved commit index reaches a follower that lacks entries in the next append (which
  carries it), and one that holds every entry sent to it in a `Commit`, capped like a
  heartbeat's at what it is known to hold and never answered. (etcd sends an empty
  append, which each follower answers for nothing: a frame each way per write.)
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfChangeRejected, NotLeader, ProposalRejected, TransferInProgress
from .log import RaftLog
from .messages import (
    AppendEntries,
    AppendResponse,
    Commit,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from .options import RaftConfig
from .progress import Progress, ProgressState
from .quorum import VoteResult, has_quorum, majority_value, vote_result
from .types import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    HardState,
    ReadState,
    Role,
    Snapshot,
)


@dataclass(frozen=True, slots=True)
class _PendingRead:
    seq: int
    index: int
    context: bytes
    requester: str


class Raft:
    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        hard_state: HardState,
        snapshot: Snapshot,
        entries: Sequence[Entry],
    ) -> None:
        self.id = config.id
        self.config = config
        self._rng = rng
        self.log = RaftLog(snapshot, entries, hard_state.commit)
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        # Every configuration from the snapshot on, uncommitted ones included (4.1).
        self._confs: list[tuple[int, ConfState]] = [(snapshot.index, snapshot.conf)]
        self._confs += [(e.index, e.change.result) for e in entries if e.change is not None]
        self.progress: dict[str, Progress] = {}
        self._votes: dict[str, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._randomized_timeout = config.election_ticks
        self.transferee: str | None = None
        self._read_seq = 0
        self._pending_reads: deque[_PendingRead] = deque()
        self._reads_awaiting_commit: list[tuple[bytes, str]] = []
        self._become_follower(self.term, None)

    # -- configuration ------------------------------------------------------------------

    @property
    def conf(self) -> ConfState:
        return self._confs[-1][1]

    def conf_at(self, index: int) -> ConfState:
        """The configuration in force at `index` (for a snapshot taken there)."""
        found = self._confs[0][1]
        for at, conf in self._confs:
            if at > index:
                break
            found = conf
        return found

    @property
    def promotable(self) -> bool:
        return self.id in self.conf.voters

    def _voters(self) -> list[str]:
        return sorted(self.conf.voters)

    def _peers(self) -> list[str]:
        return [p for p in self.progress if p != self.id]

    def _track_confs(self, entries: Sequence[Entry], replaced_from: int = 0) -> None:
        if replaced_from:
            self._confs = [c for c in self._confs if c[0] < replaced_from] or self._confs[:1]
        changed = bool(replaced_from)
        for entry in entries:
            if entry.change is not None and entry.index > self._confs[-1][0]:
                self._confs.append((entry.index, entry.change.result))
                changed = True
        if changed:
            self._on_conf_changed()

    def _on_conf_changed(self) -> None:
        if self.role is not Role.LEADER:
            return
        members = sorted(self.conf.members)
        for gone in [p for p in self.progress if p not in self.conf.members and p != self.id]:
            del self.progress[gone]
        for member in members:
            if member not in self.progress:
                self.progress[member] = Progress(next=self.log.last_index + 1)
        if self.transferee is not None and self.transferee not in self.conf.voters:
            self.transferee = None
        # A smaller quorum may commit at once; a new member needs the log.
        if self._maybe_commit():
            self._broadcast_commit()

    # -- role changes -------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        lo = self.config.election_ticks
        self._randomized_timeout = lo + self._rng.randrange(lo)
        self._votes = {}
        self.transferee = None
        self.progress = {}
        self._pending_reads.clear()
        self._reads_awaiting_commit.clear()

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        # A PreVote round changes neither term nor vote (9.6).
        self._votes = {}
        self.leader = None
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        for member in sorted(self.conf.members | {self.id}):
            self.progress[member] = Progress(next=self.log.last_index + 1)
        me = self.progress[self.id]
        me.match = self.log.stabled
        me.become_replicate()
        if self.id not in self.conf.members:
            del self.progress[self.id]
        # The no-op lets this term commit promptly, which commits everything before it.
        self._append_own([Entry(term=self.term, index=self.log.last_index + 1)])

    def campaign(self) -> None:
        self._campaign()

    def _campaign(self, transfer: bool = False) -> None:
        if self.promotable:
            self._run_election(pre=self.config.pre_vote and not transfer, transfer=transfer)

    def _run_election(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        self._votes[self.id] = True
        if vote_result(self._voters(), self._votes) is VoteResult.WON:
            self._won_election(pre)
            return
        for voter in self._voters():
            if voter != self.id:
                self._send(
                    RequestVote(
                        src=self.id,
                        dst=voter,
                        term=term,
                        last_index=self.log.last_index,
                        last_term=self.log.last_term,
                        pre=pre,
                        transfer=transfer,
                    )
                )

    def _won_election(self, pre: bool) -> None:
        if pre:
            self._run_election(pre=False, transfer=False)
        else:
            self._become_leader()

    # -- time ---------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self.promotable and self.election_elapsed >= self._randomized_timeout:
                self.election_elapsed = 0
                self._campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum:
                # CheckQuorum (6.2): a leader cut off from a quorum steps down on its own.
                if not has_quorum(self._voters(), self._recently_active):
                    self._become_follower(self.term, None)
                    return
                for peer in self._peers():
                    self.progress[peer].recent_active = False
            self.transferee = None  # a transfer that took a whole timeout has failed
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _recently_active(self, member: str) -> bool:
        if member == self.id:
            return True
        progress = self.progress.get(member)
        return progress is not None and progress.recent_active

    # -- messages from peers ------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.dst != self.id:
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.config.check_quorum
                    and self.leader is not None
                    and self.election_elapsed < self.config.election_ticks
                )
                if in_lease and not m.transfer:
                    return  # 4.2.3: a live leader's followers ignore disruptive candidates
            if (isinstance(m, RequestVote) and m.pre) or (
                isinstance(m, VoteResponse) and m.pre and m.granted
            ):
                pass  # a PreVote never changes anyone's term
            elif isinstance(m, (AppendEntries, Heartbeat, Commit, InstallSnapshot)):
                self._become_follower(m.term, m.src)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat, Commit)) and (
                self.config.check_quorum or self.config.pre_vote
            ):
                # A stale leader must learn our term, or a member that was partitioned
                # (whose term rose while PreVote kept ours) could never rejoin.
                self._send(AppendResponse(src=self.id, dst=m.src, term=self.term, index=0))
            elif isinstance(m, RequestVote) and m.pre:
                self._send(
                    VoteResponse(src=self.id, dst=m.src, term=self.term, granted=False, pre=True)
                )
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_index, m.last_term):
            self._send(VoteResponse(src=self.id, dst=m.src, term=m.term, granted=True, pre=m.pre))
            if not m.pre:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._send(
                VoteResponse(src=self.id, dst=m.src, term=self.term, granted=False, pre=m.pre)
            )

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat, Commit, InstallSnapshot)):
            self.election_elapsed = 0
            self.leader = m.src
            self._handle_replication(m)
        elif isinstance(m, TimeoutNow):
            self._campaign(transfer=True)
        elif isinstance(m, ReadIndexResponse):
            self.read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat, Commit, InstallSnapshot)):
            self._become_follower(m.term, m.src)
            self._handle_replication(m)
        elif isinstance(m, VoteResponse):
            if m.pre != (self.role is Role.PRE_CANDIDATE):
                return
            self._votes.setdefault(m.src, m.granted)
            result = vote_result(self._voters(), self._votes)
            if result is VoteResult.WON:
                self._won_election(m.pre)
            elif result is VoteResult.LOST:
                self._become_follower(self.term, None)

    def _step_leader(self, m: Message) -> None:
        if isinstance(m, AppendResponse):
            self._handle_append_response(m)
        elif isinstance(m, HeartbeatResponse):
            self._handle_heartbeat_response(m)
        elif isinstance(m, ReadIndexRequest) and m.src in self.progress:
            self._leader_read(m.context, m.src)

    # -- follower side of replication ---------------------------------------------------

    def _handle_replication(self, m: Message) -> None:
        if isinstance(m, AppendEntries):
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self.log.commit_to(min(m.commit, self.log.last_index))
            self._send(
                HeartbeatResponse(src=self.id, dst=m.src, term=self.term, read_seq=m.read_seq)
            )
        elif isinstance(m, Commit):
            self.log.commit_to(min(m.commit, self.log.last_index))
        elif isinstance(m, InstallSnapshot):
            self._handle_snapshot(m)

    def _reply_append(self, to: str, index: int) -> None:
        self._send(AppendResponse(src=self.id, dst=to, term=self.term, index=index))

    def _handle_append(self, m: AppendEntries) -> None:
        if m.prev_index < self.log.committed:
            self._reply_append(m.src, self.log.committed)
            return
        result = self.log.maybe_append(m.prev_index, m.prev_term, m.commit, m.entries)
        if result is not None:
            last_new, replaced_from = result
            self._track_confs(m.entries, replaced_from)
            self._reply_append(m.src, last_new)
            return
        hint = self.log.find_conflict_by_term(min(m.prev_index, self.log.last_index), m.prev_term)
        self._send(
            AppendResponse(
                src=self.id,
                dst=m.src,
                term=self.term,
                index=m.prev_index,
                reject=True,
                hint_index=hint,
                hint_term=self.log.term(hint) or 0,
            )
        )

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        snap = m.snapshot
        if snap.index <= self.log.committed:
            pass
        elif self.log.match_term(snap.index, snap.term):
            # We already hold that prefix: only the commit index moves.
            self.log.commit_to(snap.index)
        else:
            self.log.restore(snap)
            self._confs = [(snap.index, snap.conf)]
        self._reply_append(m.src, self.log.committed)

    # -- leader side of replication -----------------------------------------------------

    def _append_own(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        self._track_confs(entries)
        self._broadcast_append()

    def _broadcast_append(self) -> None:
        for peer in self._peers():
            self._send_append(peer)

    def _broadcast_commit(self) -> None:
        """The commit index moved: tell each follower, with an append to one that lacks
        entries (it carries the index), with an unanswered Commit to one that has all."""
        for peer in self._peers():
            pr = self.progress[peer]
            if self._holds_all_sent(pr):
                self._send_commit(peer, pr)
            else:
                self._send_append(peer)

    def _holds_all_sent(self, pr: Progress) -> bool:
        """Replicating, with every entry sent: only a Commit can tell it anything new."""
        return pr.state is ProgressState.REPLICATE and pr.next > self.log.last_index

    def _send_commit(self, to: str, pr: Progress) -> None:
        commit = min(pr.match, self.log.committed)  # safe: `to` holds the log up to match
        if commit > pr.commit_sent:
            pr.commit_sent = commit
            self._send(Commit(src=self.id, dst=to, term=self.term, commit=commit))

    def _send_append(self, to: str, allow_empty: bool = True) -> bool:
        """Send `to` what it lacks, if flow control allows; True if anything was sent."""
        pr = self.progress.get(to)
        if pr is None or pr.paused(self.config.max_inflight):
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            snap = self.log.snapshot
            self._send(InstallSnapshot(src=self.id, dst=to, term=self.term, snapshot=snap))
            pr.become_snapshot(snap.index)
            return True
        entries: tuple[Entry, ...] = ()
        if pr.next <= self.log.last_index:
            entries = self.log.slice(pr.next, self.config.max_msg_bytes)
        if not entries and not allow_empty:
            return False
        self._send(
            AppendEntries(
                src=self.id,
                dst=to,
                term=self.term,
                prev_index=prev_index,
                prev_term=prev_term,
                entries=entries,
                commit=self.log.committed,
            )
        )
        pr.on_sent(entries[-1].index if entries else None)
        pr.commit_sent = max(pr.commit_sent, min(self.log.committed, prev_index + len(entries)))
        return True

    def _broadcast_heartbeat(self) -> None:
        for peer in self._peers():
            pr = self.progress[peer]
            self._send(
                Heartbeat(
                    src=self.id,
                    dst=peer,
                    term=self.term,
                    commit=min(pr.match, self.log.committed),
                    read_seq=self._read_seq,
                )
            )

    def _handle_append_response(self, m: AppendResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.reject:
            hint = m.hint_index
            if m.hint_term > 0:
                hint = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            return
        was_paused = pr.paused(self.config.max_inflight)
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        else:
            pr.free_inflight_to(m.index)
        if self._maybe_commit():
            self._broadcast_commit()
            if self.role is not Role.LEADER:
                return  # the commit removed us from the voters
        elif was_paused:
            self._send_append(m.src)
        while self._send_append(m.src, allow_empty=False):
            pass
        if self._holds_all_sent(pr):
            # A follower outside the quorum acknowledges entries already committed: its
            # appends carried an older commit index, so tell it the new one.
            self._send_commit(m.src, pr)
        if m.src == self.transferee and pr.match == self.log.last_index:
            self._send(TimeoutNow(src=self.id, dst=m.src, term=self.term))

    def _handle_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state is ProgressState.SNAPSHOT:
            # The snapshot may have been lost: offer it again after an election timeout.
            pr.snapshot_wait += 1
            if pr.snapshot_wait * self.config.heartbeat_ticks >= self.config.election_ticks:
                pr.become_probe()
        elif pr.state is ProgressState.REPLICATE and pr.paused(self.config.max_inflight):
            pr.inflight.popleft()  # let one append through, so a lost one is re-sent
        if pr.match < self.log.last_index:
            self._send_append(m.src)
        if m.read_seq > pr.read_seq:
            pr.read_seq = m.read_seq
            self._release_reads()

    def _maybe_commit(self) -> bool:
        def match_of(voter: str) -> int:
            pr = self.progress.get(voter)
            return pr.match if pr is not None else 0

        index = majority_value(self._voters(), match_of)
        # 3.6.2: only an entry of the leader's own term is committed by counting replicas.
        if index <= self.log.committed or self.log.term(index) != self.term:
            return False
        self.log.commit_to(index)
        self._on_commit_advanced()
        return True

    def _on_commit_advanced(self) -> None:
        removed = self.role is Role.LEADER and self.id not in self.conf.voters
        if removed and self._confs[-1][0] <= self.log.committed:
            # 4.2.2: the change that removed us is committed; let the others lead.
            self._broadcast_append()
            self._become_follower(self.term, None)
            return
        if self._reads_awaiting_commit and self._committed_in_term():
            waiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
            for context, requester in waiting:
                self._leader_read(context, requester)

    def on_persisted(self) -> None:
        """The driver made the log durable up to `log.stabled`: the leader counts itself."""
        if self.role is not Role.LEADER:
            return
        me = self.progress.get(self.id)
        if me is not None and me.maybe_update(self.log.stabled) and self._maybe_commit():
            self._broadcast_commit()

    # -- reads --------------------------------------------------------------------------

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def read_index(self, context: bytes) -> None:
        if self.role is Role.LEADER:
            self._leader_read(context, self.id)
        elif self.leader is not None:
            self._send(
                ReadIndexRequest(src=self.id, dst=self.leader, term=self.term, context=context)
            )
        else:
            raise NotLeader(None)

    def _leader_read(self, context: bytes, requester: str) -> None:
        if not self._committed_in_term():
            # Until our no-op commits, our commit index may be behind the true one (6.4).
            self._reads_awaiting_commit.append((context, requester))
            return
        self._read_seq += 1
        self._pending_reads.append(
            _PendingRead(self._read_seq, self.log.committed, context, requester)
        )
        self._broadcast_heartbeat()
        self._release_reads()

    def _release_reads(self) -> None:
        def acked(voter: str) -> int:
            if voter == self.id:
                return self._read_seq
            pr = self.progress.get(voter)
            return pr.read_seq if pr is not None else 0

        confirmed = majority_value(self._voters(), acked)
        while self._pending_reads and self._pending_reads[0].seq <= confirmed:
            read = self._pending_reads.popleft()
            if read.requester == self.id:
                self.read_states.append(ReadState(read.index, read.context))
            else:
                self._send(
                    ReadIndexResponse(
                        src=self.id,
                        dst=read.requester,
                        term=self.term,
                        index=read.index,
                        context=read.context,
                    )
                )

    # -- requests from the local application --------------------------------------------

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transferee is not None:
            raise TransferInProgress(self.transferee)

    def propose(self, payloads: Sequence[bytes]) -> tuple[int, int]:
        """Append entries; returns (first index, last index) in the current term."""
        self._check_can_propose()
        if not payloads:
            raise ProposalRejected("nothing to propose")
        first = self.log.last_index + 1
        entries = [
            Entry(term=self.term, index=first + i, data=data) for i, data in enumerate(payloads)
        ]
        self._append_own(entries)
        return first, entries[-1].index

    def propose_conf_change(self, op: ConfChangeOp, node: str, context: bytes = b"") -> int:
        self._check_can_propose()
        if not self._committed_in_term():
            raise ConfChangeRejected("the leader has not yet committed an entry in its term")
        pending_at = self._confs[-1][0]
        if pending_at > self.log.committed:
            raise ConfChangeRejected(f"the change at index {pending_at} is not committed yet")
        conf = self.conf
        if op is ConfChangeOp.ADD_VOTER:
            if node in conf.voters:
                raise ConfChangeRejected(f"{node} is already a voter")
            if node in conf.learners:
                match = self.progress[node].match
                if match < self.log.committed:
                    raise ConfChangeRejected(
                        f"learner {node} is not caught up (has {match}, "
                        f"commit index is {self.log.committed})"
                    )
        elif op is ConfChangeOp.ADD_LEARNER:
            if node in conf.learners:
                raise ConfChangeRejected(f"{node} is already a learner")
        elif node not in conf.members:
            raise ConfChangeRejected(f"{node} is not a member")
        result = conf.apply(op, node)
        if not result.voters:
            raise ConfChangeRejected("the change would leave no voters")
        index = self.log.last_index + 1
        change = ConfChange(op=op, node=node, result=result, context=context)
        self._append_own([Entry(term=self.term, index=index, change=change)])
        return index

    def transfer_leadership(self, to: str) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if to == self.id or to == self.transferee:
            return
        if to not in self.conf.voters:
            raise ProposalRejected(f"cannot transfer leadership to {to}: not a voter")
        self.transferee = to
        self.election_elapsed = 0  # the transfer gets one election timeout to finish
        if self.progress[to].match == self.log.last_index:
            self._send(TimeoutNow(src=self.id, dst=to, term=self.term))
        else:
            self._send_append(to)

    def report_unreachable(self, peer: str) -> None:
        pr = self.progress.get(peer)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_leader_lost(self, peer: str) -> None:
        """The driver saw `peer`'s connection to us close. If `peer` is our leader, stop
        counting on its lease -- grant other members' (pre-)votes -- and campaign within
        1-2 ticks instead of a whole election timeout. A hint, never a decision: PreVote
        still needs a majority that also lost the leader, so a live leader whose
        connection merely reset keeps its term (its other followers are in its lease)."""
        if self.role is not Role.FOLLOWER or peer != self.leader:
            return
        self.leader = None
        soon = 1 + self._rng.randrange(2)
        self.election_elapsed = max(self.election_elapsed, self._randomized_timeout - soon)

    def report_snapshot(self, peer: str, ok: bool) -> None:
        pr = self.progress.get(peer)
        if self.role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for the follower's answer or a heartbeat

    def create_snapshot(self, index: int, data: bytes) -> Snapshot:
        term = self.log.term(index)
        if term is None:
            raise ValueError(f"no entry at {index} to snapshot")
        snap = Snapshot(index=index, term=term, conf=self.conf_at(index), data=data)
        self.log.compact(snap)
        self._confs = [(index, snap.conf)] + [c for c in self._confs if c[0] > index]
        return snap

    def _send(self, m: Message) -> None:
        self.msgs.append(m)
