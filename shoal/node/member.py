"""One control-plane member: the asyncio driver around the Raft core and the KV store.

Theory of operation. A single task (`_run`) owns the `RawNode`; nothing else touches it,
not even to read it. Everything else talks to that task through one door, as etcd's
RawNode takes TransferLeader, ReportUnreachable and ReadIndex as steps:

- HTTP handlers call `propose(command)` / `read_barrier()` / `transfer_leadership(to)` /
  `change_membership(...)`, and the peer transport reports messages and unreachable
  peers; each of these enqueues (peer messages and local requests in one inbox, in
  arrival order) and wakes the loop, and the callers that need an answer await a future
  the loop settles. So no request can reach the core between `ready()` and `advance()`.
  The loop turns all proposals queued since its last turn into ONE `propose_many`, so
  while one fsync runs the next batch gathers (group commit).
- What the rest of the member reads of Raft (role, leader, term, configuration,
  progress) is `status`, a frozen `Status` the loop publishes after every turn.
- Each turn: tick if due, step the inbox, propose, then drain `Ready`s in the
  contract's order (send leader traffic, persist + fsync in a worker thread, send the
  rest, apply to the KV store, release reads, advance).
- After every tick the leader's duties are decided by the pure `duties.leader_duties`
  (lease expiry, learner promotion, the health-check roster, lease reports, compaction)
  and carried out here; this module keeps only the bookkeeping they read (when each
  voter last answered, sampled from Raft's CheckQuorum `recent_active` before each tick;
  which revokes and roster writes are in flight).
- Leases are leader-local (DESIGN.md decision 3): keep-alives stay on the leader, which
  reports the renewed leases' remaining TTLs through the log once per election timeout
  (and before a transfer); a new leader expires each lease at its deadline plus an
  election timeout (kv/leases.py). Expired leases are revoked through the log, only
  while still leader, a bounded number per tick so mass expiry is spread.
- Watchers are fed by the `WatchHub` after every apply.
- A new leader may hold entries committed before its term that it has not applied: it
  learns they are committed only when an entry of its own term commits (its no-op).
  Writes that plan from the store (the config center's, registrations, heartbeats,
  keep-alives) first wait for `caught_up()` -- the leader has applied an entry of its
  term, so every earlier committed entry too. Once caught up this is one comparison, not
  a ReadIndex round: leadership cannot have moved on without this member leaving the
  leader role, which fails the waiters (they forward to the new leader).

It never blocks the event loop on disk: `MemberStorage.persist` runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..kv import (
    Command,
    Compact,
    KeyValueStore,
    KvError,
    LeaseCheckpoints,
    LeaseNotFound,
    LeaseRevoke,
    Put,
    Result,
)
from ..kv import restore as restore_kv
from ..kv import snapshot as snapshot_kv
from ..raft import (
    ConfChangeOp,
    ConfState,
    Message,
    NotLeader,
    ProposalRejected,
    RaftConfig,
    RawNode,
    Ready,
    Role,
    Snapshot,
    Status,
)
from ..security.tls import MemberTls
from .command_codec import decode_command, encode_command
from .commit_notices import CommitNotices
from .duties import (
    CHECKERS_KEY,
    CompactHistory,
    DutyConfig,
    LeaderStatus,
    PromoteLearner,
    PublishRoster,
    ReportLeases,
    RevokeLease,
    first_round_over,
    leader_duties,
    reachable,
)
from .metrics import MemberMetrics
from .reconfig import refusal
from .recovery import force_new_cluster
from .storage import MemberStorage
from .transport import PeerTransport
from .watchhub import WatchHub

log = logging.getLogger("shoal.node")
T = TypeVar("T")

MEMBERS_PREFIX = b"/_shoal/members/"


class NotLeaderError(Exception):
    """This member is not the leader; `leader` names it if known (for forwarding)."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")


class Unavailable(Exception):
    """The cluster cannot answer now (no leader, lost leadership mid-request, timeout)."""


class MembershipRefused(Exception):
    """A membership change that would leave the cluster without a reachable quorum."""


@dataclass(slots=True)
class MemberConfig:
    name: str
    data_dir: Path
    client_host: str = "127.0.0.1"
    client_port: int = 7700
    peer_host: str = "127.0.0.1"
    peer_port: int = 7701
    initial_cluster: dict[str, tuple[str, int]] = field(default_factory=dict)
    join: bool = False
    tick_seconds: float = 0.05
    election_ticks: int = 10
    snapshot_entries: int = 100_000
    # History kept for watches and reads at old revisions; older revisions are compacted
    # automatically (a watcher further behind gets `compacted` and re-lists).
    keep_revisions: int = 100_000
    request_timeout: float = 5.0
    # Start as the only voter of a new cluster, keeping this member's data (recovery.py).
    force_new_cluster: bool = False
    # The HTTP API's connection limits (http_protocol.py).
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 10_000
    # TLS for clients and mTLS between members, and ACL enforcement (shoal/security).
    tls: MemberTls | None = None
    acl: bool = False

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.client_host}:{self.client_port}"


@dataclass(slots=True)
class _Waiter:
    term: int
    future: asyncio.Future[Result]


# -- local steps: requests for the core that come from outside the loop -----------------


@dataclass(frozen=True, slots=True)
class _Campaign:
    """Start an election now (a cluster of one needs no election timeout)."""


@dataclass(frozen=True, slots=True)
class _TransferLeader:
    to: str
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _ChangeMembership:
    op: ConfChangeOp
    name: str
    peer: tuple[str, int]
    promote: bool
    done: asyncio.Future[int]


@dataclass(frozen=True, slots=True)
class _ReportUnreachable:
    peer: str


@dataclass(frozen=True, slots=True)
class _PeerClosed:
    """`peer`'s connection to us ended: if it led, it probably died (Raft decides)."""

    peer: str


_LocalStep = _Campaign | _TransferLeader | _ChangeMembership | _ReportUnreachable | _PeerClosed


class Member:
    def __init__(self, config: MemberConfig) -> None:
        self.config = config
        self.name = config.name
        self.metrics = MemberMetrics()
        self.metrics.watch(lambda: (self._status, len(self.kv.leases), self.kv.revision))
        self.storage = MemberStorage(config.data_dir)
        self.kv = KeyValueStore()
        self.hub = WatchHub()
        self._node: RawNode | None = None
        self._status = Status(
            id=config.name,
            role=Role.FOLLOWER,
            term=0,
            leader=None,
            commit=0,
            applied=0,
            last_index=0,
            conf=ConfState(),
        )
        self.transport: PeerTransport | None = None
        self._out: CommitNotices | None = None  # what the loop sends goes through it
        # Peer messages and local steps, in arrival order: the loop's only input.
        self._inbox: deque[Message | _LocalStep] = deque()
        self._proposals: deque[tuple[bytes, asyncio.Future[Result]]] = deque()
        self._waiting: dict[int, _Waiter] = {}
        self._read_waiters: list[asyncio.Future[None]] = []
        self._reads_in_flight: dict[bytes, list[asyncio.Future[None]]] = {}
        self._reads_confirmed: list[tuple[int, list[asyncio.Future[None]]]] = []
        self._read_seq = 0
        # Leader only: the term in which it applied an entry of its own term (caught up),
        # and the writes waiting for that.
        self._caught_up_term = 0
        self._catching_up: list[asyncio.Future[None]] = []
        self._boot = secrets.token_bytes(8)
        self._revoking: set[int] = set()
        self._peers: dict[str, tuple[str, int]] = {}
        self._auto_promote: set[str] = set()  # learners that joined to become voters
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_compaction = time.monotonic()
        self._applied_since_snapshot = 0
        # Leader only, for the duties (duties.py): when each voter last answered, when
        # this leader first saw each voter, ticks led, and a roster write in flight.
        self._heard: dict[str, float] = {}
        self._first_seen: dict[str, float] = {}
        self._leader_ticks = 0
        self._roster_pending = False
        self._duty_config = DutyConfig(
            name=config.name,
            election_ticks=config.election_ticks,
            tick_seconds=config.tick_seconds,
            keep_revisions=config.keep_revisions,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        restored = await asyncio.to_thread(self.storage.open)
        if restored.truncated_bytes:
            log.warning(
                "recovered a torn WAL tail: cut %d bytes of an unfinished write",
                restored.truncated_bytes,
            )
        for path, reason in restored.skipped_snapshots:
            log.warning("skipped damaged snapshot %s: %s", path, reason)
        snapshot, hard_state, entries = restored.snapshot, restored.hard_state, restored.entries
        if cfg.force_new_cluster:
            snapshot, hard_state = await asyncio.to_thread(
                force_new_cluster, self.storage, restored, self.name, time.monotonic()
            )
            entries = ()
            log.warning(
                "--force-new-cluster: %s is now the only voter, at index %d (term %d); "
                "members that were in the cluster must join again",
                self.name,
                snapshot.index,
                hard_state.term,
            )
        fresh = snapshot.index == 0 and not entries and hard_state.term == 0
        if fresh and not snapshot.conf.voters and not cfg.join:
            voters = frozenset(cfg.initial_cluster or {self.name: (cfg.peer_host, cfg.peer_port)})
            snapshot = Snapshot(conf=ConfState(voters=voters))
            await asyncio.to_thread(self.storage.save_snapshot, snapshot)
        if snapshot.data:
            self.kv = restore_kv(snapshot.data)
        raft_config = RaftConfig(id=self.name, election_ticks=cfg.election_ticks, heartbeat_ticks=1)
        self._node = RawNode(
            raft_config,
            random.Random(),
            hard_state=hard_state,
            snapshot=snapshot,
            entries=entries,
        )
        self._status = self._node.status()
        peers = {n: addr for n, addr in cfg.initial_cluster.items() if n != self.name}
        if cfg.force_new_cluster:
            peers = {}  # the old members are not this cluster's any more
        self._peers = dict(peers)
        self.transport = PeerTransport(
            self.name,
            cfg.peer_host,
            cfg.peer_port,
            peers,
            on_messages=self._on_messages,
            on_unreachable=self._on_unreachable,
            on_inbound_closed=self._on_inbound_closed,
            server_ssl=cfg.tls.peer_server() if cfg.tls else None,
            client_ssl=cfg.tls.peer_client() if cfg.tls else None,
        )
        await self.transport.start()
        self._out = CommitNotices(asyncio.get_running_loop(), self.transport.send)
        if snapshot.data:
            known = dict(self._peers)
            self._refresh_peers(snapshot.conf)
            for name, addr in known.items():  # the initial cluster fills any gap
                if name in snapshot.conf.members:
                    self._peers.setdefault(name, addr)
            self.transport.set_peers(dict(self._peers))
        if len(snapshot.conf.voters) == 1 and self.name in snapshot.conf.voters:
            self._inbox.append(_Campaign())  # a cluster of one needs no election timeout
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name=f"member-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            # A loop that already failed re-raises here; serve() reports it separately.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._out is not None:
            self._out.close()
        if self.transport is not None:
            await self.transport.stop()
        self.hub.close_all("member shutting down")
        await asyncio.to_thread(self.storage.close)
        for waiter in self._waiting.values():
            if not waiter.future.done():
                waiter.future.set_exception(Unavailable("member shutting down"))
        for future in self._catching_up:
            if not future.done():
                future.set_exception(Unavailable("member shutting down"))
        for step in self._inbox:
            done = getattr(step, "done", None)
            if done is not None and not done.done():
                done.set_exception(Unavailable("member shutting down"))

    # -- requests from the API ----------------------------------------------------------

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def status(self) -> Status:
        """Raft's view as of the loop's last turn (role, term, leader, commit, applied,
        configuration, progress): a frozen value, safe to read from anywhere."""
        return self._status

    @property
    def is_leader(self) -> bool:
        return self._status.role is Role.LEADER

    @property
    def leader(self) -> str | None:
        return self._status.leader

    def member_url(self, name: str) -> str | None:
        kv = self.kv.get(MEMBERS_PREFIX + name.encode())
        if kv is None:
            return None
        url: str = json.loads(kv.value)["client_url"]
        return url

    async def propose(self, command: Command) -> Result:
        """Replicate `command`; its result once applied. Raises NotLeaderError, KvError."""
        if not self.is_leader:
            raise NotLeaderError(self.leader)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._proposals.append((encode_command(command), future))
        self._wake.set()
        try:
            async with asyncio.timeout(self.config.request_timeout):
                return await future
        except TimeoutError as error:
            raise Unavailable("the write was not committed in time; it may still commit") from error

    def propose_nowait(self, command: Command) -> None:
        """Propose `command` if this member leads, without waiting: its outcome is
        dropped. For best-effort writes nobody waits for, such as revoking the lease of a
        keep-alive stream whose client went away."""
        if self.is_leader:
            self._queue_internal(command)
            self._wake.set()

    async def read_barrier(self) -> None:
        """Return once this member's state includes every write acknowledged before now."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_waiters.append(future)
        self._wake.set()
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await future
        except TimeoutError as error:
            raise Unavailable("could not confirm a linearizable read in time") from error

    @property
    def is_caught_up(self) -> bool:
        """Whether this member leads and has applied an entry of its own term, so its store
        holds every write committed before it took office."""
        status = self._status
        return status.role is Role.LEADER and self._caught_up_term == status.term

    async def caught_up(self) -> None:
        """Return once this leader's store holds every write committed before its term
        (at once, once it has). Writes that plan from the store call this before reading
        it. Raises NotLeaderError (forward it), Unavailable (not in time)."""
        if self.is_caught_up:
            return
        if not self.is_leader:
            raise NotLeaderError(self.leader)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._catching_up.append(future)
        try:
            await asyncio.wait_for(future, self.config.request_timeout)
        except TimeoutError as error:
            raise Unavailable(
                "this leader has not yet applied the writes committed before its term; retry"
            ) from error

    def keepalive(self, lease_id: int) -> int:
        """Restart a lease's TTL (leader-local, not replicated). Raises NotLeaderError,
        Unavailable (a leader that has not caught up yet: the lease may be one it has not
        applied) and LeaseNotFound (also for a lease past its expiry, being revoked)."""
        if not self.is_leader:
            raise NotLeaderError(self.leader)
        if not self.kv.leases.is_primary or not self.is_caught_up:
            raise Unavailable("a new leader is taking over the leases; retry")
        now = time.monotonic()
        leases = self.kv.leases
        if leases.time_to_live(lease_id, now).remaining <= 0:
            # Expired: its revoke is proposed or about to be. Renewing it now would tell
            # the holder it is alive while its keys are being deleted (etcd refuses too).
            raise LeaseNotFound(lease_id)
        # The renewal reaches the followers with the next lease report (_report_leases).
        return leases.keepalive(lease_id, now)

    def peer_of(self, name: str) -> tuple[str, int]:
        if name in self._peers:
            return self._peers[name]
        record = self.kv.get(MEMBERS_PREFIX + name.encode())
        if record is None:
            raise KeyError(f"unknown member {name}")
        host, port = json.loads(record.value)["peer"]
        return host, int(port)

    async def transfer_leadership(self, to: str) -> None:
        """Start moving leadership to `to` (it completes, or is abandoned, within an
        election timeout). Raises NotLeaderError, or ProposalRejected (not a voter)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._ask(_TransferLeader(to, done), done, "the leadership transfer")

    async def change_membership(
        self, op: ConfChangeOp, name: str, peer: tuple[str, int], promote: bool = False
    ) -> int:
        """Propose one membership change; the index of its entry. A learner added with
        `promote` becomes a voter as soon as it has caught up (the leader checks on every
        tick).

        Raises `MembershipRefused` if the resulting configuration would have no reachable
        quorum (reconfig.py), NotLeaderError, or the core's ProposalRejected."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        step = _ChangeMembership(op, name, peer, promote, done)
        return await self._ask(step, done, "the membership change")

    async def _ask(self, step: _LocalStep, done: asyncio.Future[T], what: str) -> T:
        """Hand `step` to the loop and wait for its answer, `done`."""
        self._inbox.append(step)
        self._wake.set()
        try:
            return await asyncio.wait_for(done, self.config.request_timeout)
        except TimeoutError as error:
            raise Unavailable(f"the member loop did not take {what} in time") from error

    # -- the loop -----------------------------------------------------------------------

    def _on_messages(self, messages: list[Any]) -> None:
        self._inbox.extend(messages)
        self._wake.set()

    def _on_unreachable(self, peer: str) -> None:
        self._inbox.append(_ReportUnreachable(peer))
        self._wake.set()

    def _on_inbound_closed(self, peer: str) -> None:
        self._inbox.append(_PeerClosed(peer))
        self._wake.set()

    async def _run(self) -> None:
        assert self._node is not None
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.config.tick_seconds
        while not self._stopping:
            timeout = max(0.0, next_tick - loop.time())
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for makes a task of the
            # wait and costs a loop turn more on every wake-up (issue 14's profile).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            if loop.time() >= next_tick:
                next_tick = loop.time() + self.config.tick_seconds
                self._note_heard()
                self._node.tick()
                self._leader_duties()
            try:
                await self._turn(next_tick)
            except Exception:  # a bug here must be loud, not a silent dead member
                log.exception("member loop failed; stopping")
                raise

    async def _turn(self, tick_due: float) -> None:
        node = self._node
        assert node is not None
        loop = asyncio.get_running_loop()
        while True:
            while self._inbox:
                item = self._inbox.popleft()
                local = _LOCAL_STEPS.get(type(item))
                if local is None:
                    node.step(item)  # type: ignore[arg-type]  # a peer message
                else:
                    local(self, item)
            if self._proposals:
                self._submit_proposals()
            if self._read_waiters:
                self._submit_read()
            if not node.has_ready():
                break
            await self._handle_ready(node.ready())
            if loop.time() >= tick_due:
                self._wake.set()  # under steady load, still let the next tick happen
                break
        if self._applied_since_snapshot >= self.config.snapshot_entries:
            await self._take_snapshot()
        self._status = node.status()

    # -- local steps (run by the loop only) -----------------------------------------------

    def _campaign(self, _: _Campaign) -> None:
        assert self._node is not None
        self._node.campaign()

    def _peer_closed(self, step: _PeerClosed) -> None:
        assert self._node is not None
        self._node.report_leader_lost(step.peer)

    def _report_unreachable(self, step: _ReportUnreachable) -> None:
        assert self._node is not None
        self._node.report_unreachable(step.peer)

    def _transfer(self, step: _TransferLeader) -> None:
        node = self._node
        assert node is not None
        if step.done.done():
            return  # the caller gave up: do not start what nobody waits for
        if node.role is Role.LEADER and node.transferee is None:
            # Report the renewals since the last report first, and propose what is
            # queued: the transfer catches the target up to our last entry, so it takes
            # office knowing every deadline, and no queued write meets TransferInProgress.
            self._report_leases(None, time.monotonic())
            if self._proposals:
                self._submit_proposals()
        try:
            node.transfer_leadership(step.to)
        except NotLeader as error:
            step.done.set_exception(NotLeaderError(error.leader_hint))
        except ProposalRejected as error:
            step.done.set_exception(error)
        else:
            step.done.set_result(None)

    def _change(self, step: _ChangeMembership) -> None:
        if step.done.done():
            return
        try:
            index = self._propose_change(step.op, step.name, step.peer, step.promote)
        except (NotLeaderError, MembershipRefused, ProposalRejected) as error:
            step.done.set_exception(error)
        else:
            step.done.set_result(index)

    def _propose_change(
        self, op: ConfChangeOp, name: str, peer: tuple[str, int], promote: bool
    ) -> int:
        node = self._node
        assert node is not None
        if node.role is not Role.LEADER:
            raise NotLeaderError(node.leader)
        conf = node.conf
        reason = refusal(op, name, conf.voters, conf.learners, self._reachable())
        if reason is not None:
            raise MembershipRefused(reason)
        context = json.dumps({"peer": list(peer), "promote": promote}).encode()
        try:
            return node.propose_conf_change(op, name, context)
        except NotLeader as error:
            raise NotLeaderError(error.leader_hint) from error

    def _submit_proposals(self) -> None:
        node = self._node
        assert node is not None
        batch = list(self._proposals)
        self._proposals.clear()
        try:
            first, _ = node.propose_many([data for data, _ in batch])
        except ProposalRejected as error:
            leader = error.leader_hint if isinstance(error, NotLeader) else None
            for _, future in batch:
                if not future.done():
                    future.set_exception(
                        NotLeaderError(leader)
                        if isinstance(error, NotLeader)
                        else Unavailable(str(error))
                    )
            return
        self.metrics.proposals.inc(len(batch))
        for offset, (_, future) in enumerate(batch):
            self._waiting[first + offset] = _Waiter(node.term, future)

    def _submit_read(self) -> None:
        node = self._node
        assert node is not None
        waiters, self._read_waiters = self._read_waiters, []
        # Forget rounds whose readers all gave up (timed out): they may never be answered.
        self._reads_in_flight = {
            c: ws for c, ws in self._reads_in_flight.items() if any(not f.done() for f in ws)
        }
        self._read_seq += 1
        # The boot nonce keeps a response to a read sent before a restart from releasing
        # a read made after it.
        context = self._boot + b"%d" % self._read_seq
        try:
            node.read_index(context)
        except ProposalRejected as error:
            for future in waiters:
                if not future.done():
                    future.set_exception(Unavailable(f"no leader to confirm the read: {error}"))
            return
        self._reads_in_flight[context] = waiters

    async def _handle_ready(self, rd: Ready) -> None:
        node, transport = self._node, self._out
        assert node is not None and transport is not None
        if rd.must_sync:
            transport.send(rd.messages)  # appends leave before our own fsync (pipelined)
        if rd.must_persist:
            await self._persist(rd)
        transport.send(rd.persisted_messages)
        if rd.snapshot is not None:
            self.metrics.snapshots_installed.inc()
            self.kv = restore_kv(rd.snapshot.data) if rd.snapshot.data else KeyValueStore()
            self.hub.reset(self.kv.revision)
            for index in [i for i in self._waiting if i <= rd.snapshot.index]:
                self._settle(index, -1, None)  # outcome unknown to us: the client retries
            self._refresh_peers(rd.snapshot.conf)
        now = time.monotonic()
        for entry in rd.committed_entries:
            if entry.change is not None:
                self._on_conf(entry.change.result, entry.change)
            if entry.data:
                self._apply(entry.index, entry.term, entry.data, now)
            else:
                self._settle(entry.index, entry.term, None)
        if rd.committed_entries:
            self._applied_since_snapshot += len(rd.committed_entries)
            self.hub.publish(self.kv)
        for rs in rd.read_states:
            waiters = self._reads_in_flight.pop(rs.context, None)
            if waiters:
                self._reads_confirmed.append((rs.index, waiters))
        last = rd.committed_entries[-1] if rd.committed_entries else None
        if last is not None and last.term == node.term and node.role is Role.LEADER:
            self._caught_up_term = node.term  # everything before it is applied too
        if rd.messages and not rd.must_sync:
            # The rest (commit notices, heartbeats) wait one loop step: a write applied
            # just now gets its answer flushed first (its flush is itself a `call_soon`
            # of the handler's step), then the frames to the followers leave. Sent at
            # once, the frames and the followers they wake came first, ~0.3 ms of a
            # write's latency at one client on 3 members (issue 14).
            asyncio.get_running_loop().call_soon(transport.send, rd.messages)
        node.advance(rd)
        self._release_reads()
        if rd.soft_state is not None:
            # Role, term or leader moved: readers of `status` see it before anything else
            # runs. Otherwise the end of the loop's turn refreshes it (one Status a turn).
            self._status = node.status()
            self.metrics.saw_leader(rd.soft_state.leader)
            self._on_role_change()
        if self._catching_up and self.is_caught_up:
            self._release_caught_up(None)

    async def _persist(self, rd: Ready) -> None:
        """Make `rd` durable. An fsync runs in a worker thread, and the loop waits for it
        while the API keeps parsing the next batch's requests (and answering keep-alives
        and reads). A Ready that needs no fsync (only the commit index moved) is written
        to the WAL's buffer here: a thread round trip for it cost ~0.1 ms of CPU on each
        member for every write at one client (issue 14)."""
        if self.storage.persist_buffered(rd):
            return
        synced = await asyncio.to_thread(self.storage.persist, rd)
        if synced is not None:
            self.metrics.fsync_seconds.observe(synced)

    def _release_caught_up(self, error: Exception | None) -> None:
        waiters, self._catching_up = self._catching_up, []
        for future in waiters:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _apply(self, index: int, term: int, data: bytes, now: float) -> None:
        result: Result | Exception
        command = decode_command(data)
        if isinstance(command, Compact):
            self.hub.publish(self.kv)  # deliver the events this compaction drops first
        try:
            result = self.kv.apply(command, now)
        except KvError as error:
            result = error
        self._settle(index, term, result)

    def _settle(self, index: int, term: int, result: Result | Exception | None) -> None:
        waiter = self._waiting.pop(index, None)
        if waiter is None or waiter.future.done():
            return
        if term == -1:
            waiter.future.set_exception(
                Unavailable("a snapshot replaced the log; the write's outcome is unknown")
            )
        elif waiter.term != term:
            waiter.future.set_exception(
                Unavailable("leadership changed before the write committed; retry")
            )
        elif isinstance(result, Exception):
            waiter.future.set_exception(result)
        elif result is not None:
            waiter.future.set_result(result)

    def _release_reads(self) -> None:
        assert self._node is not None
        applied = self._node.status().applied
        still = []
        for index, waiters in self._reads_confirmed:
            if index <= applied:
                for future in waiters:
                    if not future.done():
                        future.set_result(None)
            else:
                still.append((index, waiters))
        self._reads_confirmed = still

    def _refresh_peers(self, conf: ConfState) -> None:
        """Peer addresses for every member of `conf`, from the member records in the store
        (after a snapshot or a restart the conf-change entries that named them are gone)."""
        peers = {}
        for name in sorted(conf.members - {self.name}):
            with contextlib.suppress(KeyError):
                peers[name] = self.peer_of(name)
        self._peers = peers
        if self.transport is not None:
            self.transport.set_peers(dict(peers))

    def _on_conf(self, conf: ConfState, change: Any = None) -> None:
        if self.transport is None or change is None:
            return
        if change.op is ConfChangeOp.REMOVE:
            self._peers.pop(change.node, None)
        elif change.context:
            context = json.loads(change.context)
            if context.get("promote") and change.op is ConfChangeOp.ADD_LEARNER:
                self._auto_promote.add(change.node)
            if change.node != self.name:
                host, port = context["peer"]
                self._peers[change.node] = (host, int(port))
        if change.op is not ConfChangeOp.ADD_LEARNER:
            self._auto_promote.discard(change.node)
        self.transport.set_peers(dict(self._peers))

    def _on_role_change(self) -> None:
        assert self._node is not None
        now = time.monotonic()
        # Reads asked of the previous leader may never be answered: let clients retry.
        for waiters in self._reads_in_flight.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(Unavailable("leadership changed; retry the read"))
        self._reads_in_flight.clear()
        if self._node.role is not Role.LEADER and self._catching_up:
            self._release_caught_up(NotLeaderError(self._node.leader))
        if self._node.role is Role.LEADER:
            extend = self.config.election_ticks * self.config.tick_seconds
            self.kv.leases.promote(now, extend)
            self._revoking.clear()
            self._heard = {}
            self._first_seen = dict.fromkeys(self._node.conf.voters, now)
            self._leader_ticks = 0
            self._roster_pending = False
            record = json.dumps(
                {
                    "client_url": self.config.client_url,
                    "peer": [self.config.peer_host, self.config.peer_port],
                }
            ).encode()
            self._queue_internal(Put(key=MEMBERS_PREFIX + self.name.encode(), value=record))
            self._wake.set()
        elif self.kv.leases.is_primary:
            self.kv.leases.demote()

    # -- leader duties (decided in duties.py, carried out here) --------------------------

    def _leader_status(self, status: Status) -> LeaderStatus:
        return LeaderStatus(
            raft=status,
            ticks=self._leader_ticks,
            heard=dict(self._heard),
            first_seen=dict(self._first_seen),
            revoking=frozenset(self._revoking),
            promoting=frozenset(self._auto_promote),
            roster_pending=self._roster_pending,
            last_compaction=self._last_compaction,
        )

    def _leader_duties(self) -> None:
        node = self._node
        assert node is not None
        if node.role is not Role.LEADER:
            return
        now = time.monotonic()
        self._revoking &= set(self.kv.leases.ids())
        status = self._leader_status(node.status())
        for duty in leader_duties(now, self.kv, status, self._duty_config):
            _CARRY_OUT[type(duty)](self, duty, now)

    def _revoke(self, duty: RevokeLease, now: float) -> None:
        self._revoking.add(duty.lease_id)
        future = self._queue_internal(LeaseRevoke(id=duty.lease_id))
        future.add_done_callback(self._revoke_settled(duty.lease_id))

    def _promote(self, duty: PromoteLearner, now: float) -> None:
        # Another change pending, or not heard from yet: the duty comes again next tick.
        with contextlib.suppress(ProposalRejected, MembershipRefused, KeyError):
            self._propose_change(ConfChangeOp.ADD_VOTER, duty.name, self.peer_of(duty.name), False)
            log.info("promoting caught-up learner %s", duty.name)

    def _publish_roster(self, duty: PublishRoster, now: float) -> None:
        self._roster_pending = True
        future = self._queue_internal(Put(key=CHECKERS_KEY, value=duty.value))
        future.add_done_callback(self._roster_settled)
        log.info("health-check roster: %s", ", ".join(duty.live))

    def _roster_settled(self, _: asyncio.Future[Result]) -> None:
        self._roster_pending = False

    def _report_leases(self, _: ReportLeases | None, now: float) -> None:
        """Propose the remaining TTLs of the leases kept alive since the last report, as
        one entry (leases.py): every member's deadlines then trail ours by at most one
        election timeout, so a new leader neither restarts a dead lease's TTL nor cuts a
        live one short."""
        checkpoints = self.kv.leases.checkpoints(now)
        if checkpoints:
            self._queue_internal(LeaseCheckpoints(checkpoints=tuple(checkpoints)))

    def _compact(self, duty: CompactHistory, now: float) -> None:
        self._last_compaction = now
        self._queue_internal(Compact(revision=duty.revision))

    def _reachable(self) -> frozenset[str]:
        """Whom this leader can count on reaching (duties.reachable)."""
        assert self._node is not None
        status = self._leader_status(self._node.status())
        return reachable(time.monotonic(), status, self._duty_config)

    def _note_heard(self) -> None:
        """Record which voters answered this CheckQuorum round; called before a tick,
        which may start the next round and forget."""
        node = self._node
        if node is None or node.role is not Role.LEADER:
            return
        self._leader_ticks += 1
        now = time.monotonic()
        for voter in node.conf.voters:
            self._first_seen.setdefault(voter, now)
        # A new leader's progress says every peer is active until its first round ends.
        if first_round_over(self._leader_ticks, self._duty_config):
            for name in node.recently_active():
                self._heard[name] = now

    def _revoke_settled(self, lease_id: int) -> Callable[[asyncio.Future[Result]], None]:
        def settled(future: asyncio.Future[Result]) -> None:
            # A revoke refused (say, mid-transfer) must be tried again on a later tick.
            if future.cancelled() or future.exception() is not None:
                self._revoking.discard(lease_id)

        return settled

    def _queue_internal(self, command: Command) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_ignore_outcome)
        self._proposals.append((encode_command(command), future))
        return future

    async def _take_snapshot(self) -> None:
        node = self._node
        assert node is not None
        applied = node.status().applied
        snap = node.create_snapshot(applied, snapshot_kv(self.kv))
        await asyncio.to_thread(self.storage.save_snapshot, snap)
        self._applied_since_snapshot = 0


def _ignore_outcome(future: asyncio.Future[Result]) -> None:
    if not future.cancelled():
        future.exception()  # retrieve it so asyncio does not warn; the next tick retries


_LOCAL_STEPS: dict[type, Callable[[Member, Any], None]] = {
    _Campaign: Member._campaign,
    _ReportUnreachable: Member._report_unreachable,
    _PeerClosed: Member._peer_closed,
    _TransferLeader: Member._transfer,
    _ChangeMembership: Member._change,
}

_CARRY_OUT: dict[type, Callable[[Member, Any, float], None]] = {
    RevokeLease: Member._revoke,
    PromoteLearner: Member._promote,
    PublishRoster: Member._publish_roster,
    ReportLeases: Member._report_leases,
    CompactHistory: Member._compact,
}
