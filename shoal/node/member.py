"""One control-plane member: the asyncio driver around the Raft core and the KV store.

Theory of operation. A single task (`_run`) owns the `RawNode`; nothing else touches it.
Everything else talks to that task through queues and futures:

- HTTP handlers call `propose(command)` / `read_barrier()` / `keepalive(...)`; these
  enqueue and wake the loop. The loop turns all proposals queued since its last turn into
  ONE `propose_many`, so while one fsync runs the next batch gathers (group commit).
- Each turn: tick if due, step inbound peer messages, propose, then drain `Ready`s in the
  contract's order (send leader traffic, persist + fsync in a worker thread, send the
  rest, apply to the KV store, release reads, advance).
- Leases are leader-local (DESIGN.md decision 3): keep-alives stay on the leader, which
  reports the renewed leases' remaining TTLs through the log once per election timeout
  (and before a transfer); a new leader expires each lease at its deadline plus an
  election timeout (kv/leases.py). Expiry is checked on ticks, revoked through the log
  only while still leader, at most `MAX_REVOKES_PER_TICK` at a time so mass expiry is
  spread.
- Watchers are fed by the `WatchHub` after every apply.
- The leader keeps the roster of live voters at `CHECKERS_KEY` (who runs active health
  checks, see health.py): a voter is live while the leader has heard from it within
  `2 x election timeout` (Raft's CheckQuorum `recent_active`, sampled before each tick).
  A new leader first waits that long, so it never drops a member it simply has not
  heard from yet; the key is written only when the set changes, and only by the leader.

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
from typing import Any

from ..kv import (
    Command,
    Compact,
    KeyValueStore,
    KvError,
    LeaseCheckpoints,
    LeaseRevoke,
    Put,
    Result,
)
from ..kv import restore as restore_kv
from ..kv import snapshot as snapshot_kv
from ..raft import (
    ConfChangeOp,
    ConfState,
    NotLeader,
    ProposalRejected,
    RaftConfig,
    RawNode,
    Ready,
    Role,
    Snapshot,
)
from ..registry import encode_roster
from ..security.tls import MemberTls
from .kvcodec import decode_command, encode_command
from .metrics import MemberMetrics
from .reconfig import refusal
from .recovery import force_new_cluster
from .storage import MemberStorage
from .transport import PeerTransport
from .watchhub import WatchHub

log = logging.getLogger("shoal.node")

MEMBERS_PREFIX = b"/_shoal/members/"
CHECKERS_KEY = b"/_shoal/checkers"  # JSON list of the live voters that run health checks
MAX_REVOKES_PER_TICK = 64
COMPACT_EVERY_SECONDS = 60.0  # how often the leader considers compacting history


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


class Member:
    def __init__(self, config: MemberConfig) -> None:
        self.config = config
        self.name = config.name
        self.metrics = MemberMetrics()
        self.storage = MemberStorage(config.data_dir)
        self.kv = KeyValueStore()
        self.hub = WatchHub()
        self.node: RawNode | None = None
        self.transport: PeerTransport | None = None
        self._inbox: deque[Any] = deque()
        self._proposals: deque[tuple[bytes, asyncio.Future[Result]]] = deque()
        self._waiting: dict[int, _Waiter] = {}
        self._read_waiters: list[asyncio.Future[None]] = []
        self._reads_in_flight: dict[bytes, list[asyncio.Future[None]]] = {}
        self._reads_confirmed: list[tuple[int, list[asyncio.Future[None]]]] = []
        self._read_seq = 0
        self._boot = secrets.token_bytes(8)
        self._revoking: set[int] = set()
        self._peers: dict[str, tuple[str, int]] = {}
        self._auto_promote: set[str] = set()  # learners that joined to become voters
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_compaction = time.monotonic()
        self._applied_since_snapshot = 0
        self._heard: dict[str, float] = {}  # leader only: when each voter last answered
        self._leader_ticks = 0
        self._roster_pending = False
        self.ready_event = asyncio.Event()  # set once a leader is known and applied

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
        self.node = RawNode(
            raft_config,
            random.Random(),
            hard_state=hard_state,
            snapshot=snapshot,
            entries=entries,
        )
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
            server_ssl=cfg.tls.peer_server() if cfg.tls else None,
            client_ssl=cfg.tls.peer_client() if cfg.tls else None,
        )
        await self.transport.start()
        if snapshot.data:
            known = dict(self._peers)
            self._refresh_peers(snapshot.conf)
            for name, addr in known.items():  # the initial cluster fills any gap
                if name in snapshot.conf.members:
                    self._peers.setdefault(name, addr)
            self.transport.set_peers(dict(self._peers))
        self._task = asyncio.create_task(self._run(), name=f"member-{self.name}")
        if len(snapshot.conf.voters) == 1 and self.name in snapshot.conf.voters:
            self.node.campaign()  # a cluster of one needs no election timeout
            self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            # A loop that already failed re-raises here; serve() reports it separately.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.transport is not None:
            await self.transport.stop()
        self.hub.close_all("member shutting down")
        await asyncio.to_thread(self.storage.close)
        for waiter in self._waiting.values():
            if not waiter.future.done():
                waiter.future.set_exception(Unavailable("member shutting down"))

    # -- requests from the API ----------------------------------------------------------

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def is_leader(self) -> bool:
        return self.node is not None and self.node.role is Role.LEADER

    @property
    def leader(self) -> str | None:
        return self.node.leader if self.node is not None else None

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
            return await asyncio.wait_for(future, self.config.request_timeout)
        except TimeoutError as error:
            raise Unavailable("the write was not committed in time; it may still commit") from error

    async def read_barrier(self) -> None:
        """Return once this member's state includes every write acknowledged before now."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_waiters.append(future)
        self._wake.set()
        try:
            await asyncio.wait_for(future, self.config.request_timeout)
        except TimeoutError as error:
            raise Unavailable("could not confirm a linearizable read in time") from error

    def keepalive(self, lease_id: int) -> int:
        """Restart a lease's TTL (leader-local, not replicated). Raises NotLeaderError."""
        if not self.is_leader:
            raise NotLeaderError(self.leader)
        if not self.kv.leases.is_primary:
            raise Unavailable("a new leader is taking over the leases; retry")
        # The renewal reaches the followers with the next lease report (_report_leases).
        return self.kv.leases.keepalive(lease_id, time.monotonic())

    def peer_of(self, name: str) -> tuple[str, int]:
        if name in self._peers:
            return self._peers[name]
        record = self.kv.get(MEMBERS_PREFIX + name.encode())
        if record is None:
            raise KeyError(f"unknown member {name}")
        host, port = json.loads(record.value)["peer"]
        return host, int(port)

    def transfer_leadership(self, to: str) -> None:
        assert self.node is not None
        if self.is_leader and self.node.transferee is None:
            # Report the renewals since the last report first: the transfer catches the
            # target up to our last entry, so it takes office knowing every deadline.
            self._report_leases(time.monotonic())
            if self._proposals:
                self._submit_proposals()
        try:
            self.node.transfer_leadership(to)
        except NotLeader as error:
            raise NotLeaderError(error.leader_hint) from error
        self._wake.set()

    def propose_member_change(
        self, op: ConfChangeOp, name: str, peer: tuple[str, int], promote: bool = False
    ) -> int:
        """Propose one membership change; a learner added with `promote` becomes a voter
        as soon as it has caught up (the leader checks on every tick).

        Raises `MembershipRefused` if the resulting configuration would have no reachable
        quorum (reconfig.py), NotLeaderError, or the core's ProposalRejected."""
        assert self.node is not None and self.transport is not None
        if not self.is_leader:
            raise NotLeaderError(self.leader)
        conf = self.node.conf
        reason = refusal(op, name, conf.voters, conf.learners, self._reachable())
        if reason is not None:
            raise MembershipRefused(reason)
        context = json.dumps({"peer": list(peer), "promote": promote}).encode()
        try:
            index = self.node.propose_conf_change(op, name, context)
        except NotLeader as error:
            raise NotLeaderError(error.leader_hint) from error
        self._wake.set()
        return index

    # -- the loop -----------------------------------------------------------------------

    def _on_messages(self, messages: list[Any]) -> None:
        self._inbox.extend(messages)
        self._wake.set()

    def _on_unreachable(self, peer: str) -> None:
        if self.node is not None:
            self.node.report_unreachable(peer)

    async def _run(self) -> None:
        assert self.node is not None
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.config.tick_seconds
        while not self._stopping:
            timeout = max(0.0, next_tick - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if loop.time() >= next_tick:
                next_tick = loop.time() + self.config.tick_seconds
                self._note_heard()
                self.node.tick()
                self._leader_duties()
            try:
                await self._turn(next_tick)
            except Exception:  # a bug here must be loud, not a silent dead member
                log.exception("member loop failed; stopping")
                raise

    async def _turn(self, tick_due: float) -> None:
        node = self.node
        assert node is not None
        loop = asyncio.get_running_loop()
        while True:
            while self._inbox:
                node.step(self._inbox.popleft())
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

    def _submit_proposals(self) -> None:
        node = self.node
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
        node = self.node
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
        node, transport = self.node, self.transport
        assert node is not None and transport is not None
        transport.send(rd.messages)
        if rd.must_persist:
            started = time.perf_counter()
            await asyncio.to_thread(self.storage.persist, rd)
            self.metrics.fsync_seconds.observe(time.perf_counter() - started)
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
        node.advance(rd)
        self._release_reads()
        if rd.soft_state is not None:
            self._on_role_change()
        status = node.status()
        self.metrics.observe(status, leases=len(self.kv.leases), revision=self.kv.revision)

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
        assert self.node is not None
        applied = self.node.status().applied
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
        assert self.node is not None
        now = time.monotonic()
        # Reads asked of the previous leader may never be answered: let clients retry.
        for waiters in self._reads_in_flight.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(Unavailable("leadership changed; retry the read"))
        self._reads_in_flight.clear()
        if self.node.role is Role.LEADER:
            extend = self.config.election_ticks * self.config.tick_seconds
            self.kv.leases.promote(now, extend)
            self._revoking.clear()
            self._heard = dict.fromkeys(self.node.conf.voters, now)
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
        if self.node.leader is not None:
            self.ready_event.set()

    def _leader_duties(self) -> None:
        if not self.is_leader:
            return
        now = time.monotonic()
        self._revoking &= set(self.kv.leases.ids())
        for lease_id in self.kv.leases.expired(now)[:MAX_REVOKES_PER_TICK]:
            if lease_id in self._revoking:
                continue
            self._revoking.add(lease_id)
            future = self._queue_internal(LeaseRevoke(id=lease_id))
            future.add_done_callback(self._revoke_settled(lease_id))
        self._promote_caught_up_learners()
        self._publish_checkers(now)
        if self._leader_ticks % self.config.election_ticks == 0:
            self._report_leases(now)
        if now - self._last_compaction >= COMPACT_EVERY_SECONDS:
            self._last_compaction = now
            keep = self.config.keep_revisions
            if self.kv.revision - self.kv.compacted_revision > 2 * keep:
                self._queue_internal(Compact(revision=self.kv.revision - keep))

    def _report_leases(self, now: float) -> None:
        """Propose the remaining TTLs of the leases kept alive since the last report, as
        one entry (leases.py): every member's deadlines then trail ours by at most one
        election timeout, so a new leader neither restarts a dead lease's TTL nor cuts a
        live one short."""
        checkpoints = self.kv.leases.checkpoints(now)
        if checkpoints:
            self._queue_internal(LeaseCheckpoints(checkpoints=tuple(checkpoints)))

    def _reachable(self) -> frozenset[str]:
        """Members (voters and learners) this leader heard from within the last election
        timeout, itself included. Until its first CheckQuorum round has ended a new
        leader's progress calls every peer active, so then a peer counts once it has
        acknowledged an append of this term (its match index is no longer zero)."""
        assert self.node is not None
        if self._leader_ticks <= self.config.election_ticks + 1:
            progress = self.node.status().progress
            acked = {name for name, pr in progress.items() if pr.match > 0}
            return frozenset({self.name, *acked})
        now = time.monotonic()
        timeout = self.config.election_ticks * self.config.tick_seconds
        heard = {name for name, at in self._heard.items() if now - at < timeout}
        return frozenset({self.name, *heard})

    def _note_heard(self) -> None:
        """Record which voters answered this CheckQuorum round; called before a tick,
        which may start the next round and forget."""
        node = self.node
        if node is None or node.role is not Role.LEADER:
            return
        self._leader_ticks += 1
        # A new leader's progress says every peer is active until its first round ends.
        if self._leader_ticks > self.config.election_ticks + 1:
            now = time.monotonic()
            for name in node.recently_active():
                self._heard[name] = now

    def _publish_checkers(self, now: float) -> None:
        """Write the roster of live voters when it changed (see the module docstring)."""
        node = self.node
        assert node is not None
        if self._roster_pending or self._leader_ticks <= 2 * self.config.election_ticks:
            return
        grace = 2 * self.config.election_ticks * self.config.tick_seconds
        voters = node.conf.voters
        live = [v for v in voters if v == self.name or now - self._heard.setdefault(v, now) < grace]
        stored = self.kv.get(CHECKERS_KEY)
        if stored is None and voters == {self.name}:
            return  # a cluster of one needs no roster: without one, the leader checks all
        value = encode_roster(live)
        if stored is not None and stored.value == value:
            return
        self._roster_pending = True
        future = self._queue_internal(Put(key=CHECKERS_KEY, value=value))
        future.add_done_callback(self._roster_settled)
        log.info("health-check roster: %s", ", ".join(sorted(live)))

    def _roster_settled(self, _: asyncio.Future[Result]) -> None:
        self._roster_pending = False

    def _promote_caught_up_learners(self) -> None:
        node = self.node
        assert node is not None
        if not self._auto_promote:
            return
        status = node.status()
        for name in sorted(self._auto_promote & status.conf.learners):
            progress = status.progress.get(name)
            if progress is None or progress.match < status.commit:
                continue
            # Another change pending, or not heard from yet: try again next tick.
            with contextlib.suppress(ProposalRejected, MembershipRefused):
                self.propose_member_change(ConfChangeOp.ADD_VOTER, name, self.peer_of(name))
                log.info("promoting caught-up learner %s", name)
            return  # one change at a time

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
        node = self.node
        assert node is not None
        applied = node.status().applied
        snap = node.create_snapshot(applied, snapshot_kv(self.kv))
        await asyncio.to_thread(self.storage.save_snapshot, snap)
        self._applied_since_snapshot = 0


def _ignore_outcome(future: asyncio.Future[Result]) -> None:
    if not future.cancelled():
        future.exception()  # retrieve it so asyncio does not warn; the next tick retries
