"""The I/O shell of one consumer on the built-in backend: lease, claims, watches, commits.

Theory of operation (docs/events.md has the picture).

1. Join: make sure the group exists, grant a lease and hold it over the leader's
   keep-alive stream with revoke-on-close (the connection is the lease: when this process
   dies its claims are deleted at once), put `members/{me}` on it, and list the group's
   keys -- the view -- at revision R.
2. Two watches from R + 1: the group's keys (members come and go, claims change hands)
   and the topic's messages. After every change of the view `assignment.plan` says what
   to claim, adopt, hand back or forget.
3. A claim is one transaction: "partition p has no claim and my member key is on my
   lease" -> put the claim (on my lease) and read the committed offset. Then the
   partition is `Assigned` and listed (`Loaded`); the watch adds what comes after.
4. The state machine (`delivery.GroupDelivery`) decides what to hand to the handler; a
   handler's outcome comes back as `Acked` / `Failed`. Every `commit_interval` the changed
   watermarks are written in one transaction guarded by my claims' lease, so a consumer
   that lost a partition can never move its offset.
5. Handing back (`Released`) is one transaction: offset and claim delete together.
6. Anything unexpected (the lease lost, a watch compacted, a transaction refused in a
   way the view does not explain) restarts the consumer from step 1 with a fresh state
   machine: what was in flight here is redelivered from the committed offsets, never
   lost. Answers from handlers of an earlier run are told apart by a generation number.

A plain (group-less) subscriber owns every partition from the start, has no lease and
commits nothing: it is the same machine with its own offsets in memory.

One task (`_main`) owns the state machine; the others only put items in its inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.client import Event, KeyValue, NotFound, ShoalError, WatchCompacted

from . import metrics
from .assignment import plan
from .delivery import (
    Acked,
    Arrived,
    Assigned,
    DeadLetter,
    Deliver,
    Failed,
    GroupDelivery,
    Instruction,
    Loaded,
    Lost,
    Released,
    Revoke,
    Stimulus,
    Tick,
)
from .errors import EventsError
from .handlers import Handler, is_async, outcome
from .model import MAX_PARTITIONS, Layout, Message, TopicConfig
from .stored import group_start, message_of
from .types import SubscribeOptions

if TYPE_CHECKING:
    from .builtin import BuiltinBackend

__all__ = ["Consumer"]

log = logging.getLogger("shoal.events.consumer")

RETRY_MIN, RETRY_MAX = 0.05, 2.0


class _Rejoin(Exception):
    """Start over from the join (step 6 of the module docstring)."""


@dataclass(slots=True)
class _View:
    members: set[str]
    claims: dict[int, str]  # partition -> member
    claim_leases: dict[int, int]


class Consumer:
    """One member of `group` (or a plain subscriber when `group` is None) of a topic."""

    def __init__(
        self,
        backend: BuiltinBackend,
        layout: Layout,
        config: TopicConfig,
        group: str | None,
        handler: Handler,
        options: SubscribeOptions,
    ) -> None:
        self.backend, self.acp = backend, backend.acp
        self.layout, self.config, self.group = layout, config, group
        self.topic = layout.topic
        self.handler, self.options = handler, options
        self.member_id = f"{secrets.token_hex(6)}"
        self.label = group or ""
        self._async_handler = is_async(handler)
        self._pool: ThreadPoolExecutor | None = None
        if not self._async_handler:
            self._pool = ThreadPoolExecutor(options.max_in_flight, thread_name_prefix="shoal-ev")
        self.machine = GroupDelivery(self.topic, config, max_in_flight=options.max_in_flight)
        self.generation = 0
        self.lease: int | None = None
        self.joined = asyncio.Event()
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._busy: set[int] = set()
        self._committed: dict[int, int] = {}
        self._start = 0
        self._view = _View(set(), {}, {})
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._released = asyncio.Event()
        self.last_error: BaseException | None = None
        self._resume_at: int | None = None

    # -- public -------------------------------------------------------------------------

    @property
    def partitions(self) -> frozenset[int]:
        return self.machine.partitions

    async def run(self) -> None:
        """Consume until `stop` (or cancelled); rejoin after any trouble."""
        delay = RETRY_MIN
        try:
            while not self._stopping:
                try:
                    await self._run_once()
                except* _Stopped:
                    self._stopping = True
                except* (_Rejoin, ShoalError, EventsError) as group:
                    self.last_error = group.exceptions[0]
                    log.info(
                        "consumer %s of %s/%s starts over: %s",
                        self.member_id, self.topic, self.label, self.last_error,
                    )  # fmt: skip
                if self._stopping:
                    return
                self._reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        finally:
            await self._cleanup()

    async def stop(self) -> None:
        """Hand every partition back once its in-flight messages finish (up to the
        drain timeout), commit, and leave the group (revoking the lease)."""
        self._stopping = True
        if self.group is not None and self.joined.is_set():
            self._inbox.put_nowait(("drain",))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.options.drain_timeout)
        self._inbox.put_nowait(("stop",))

    # -- one run ------------------------------------------------------------------------

    def _put(self, generation: int, item: tuple[Any, ...]) -> None:
        """Post `item` to the main task, unless it comes from an earlier run."""
        if generation == self.generation:
            self._inbox.put_nowait(item)

    def _reset(self) -> None:
        marks = self.machine.watermarks()
        if self.group is None and marks:
            self._resume_at = min(marks.values())
        self.generation += 1
        for p in list(self.machine.partitions):
            self.machine.handle(Lost(p), time.monotonic())
        self._busy.clear()
        self._committed.clear()
        self._inbox = asyncio.Queue()
        self.joined.clear()
        self.member_id = secrets.token_hex(6)

    async def _run_once(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.group is None:
                revision = await self._start_plain()
            else:
                revision = await self._join(tg)
                tg.create_task(self._watch_group(revision + 1))
                tg.create_task(self._commit_loop())
            tg.create_task(self._watch_messages(revision + 1))
            self.joined.set()
            await self._main()
            raise _Stopped

    async def _cleanup(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.lease is not None:
            with contextlib.suppress(ShoalError):
                await self.acp.revoke(self.lease)
            self.lease = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _start_plain(self) -> int:
        """Own every partition from `from_offset` (or where the last run got to, or now);
        the revision to watch after."""
        revision = (await self.acp.cluster_status()).revision
        start = self._resume_at if self._resume_at is not None else self.options.from_offset
        now = time.monotonic()
        for p in range(self.config.partitions):
            self.machine.handle(Assigned(p, revision + 1 if start is None else start), now)
        for p in range(self.config.partitions):
            messages: list[Message] = []
            if start is not None:
                messages = await self.backend.partition_messages(self.layout, self.config, p, start)
            self._execute(self.machine.handle(Loaded(p, tuple(messages)), now))
        return revision

    async def _join(self, tg: asyncio.TaskGroup) -> int:
        """Step 1: the group, a lease held by this connection, my member key, the view."""
        assert self.group is not None
        group_key = self.layout.group_key(self.group)
        meta = json.dumps({"start": self.options.start, "created": time.time()})
        await self.acp.txn(
            [{"key": group_key, "target": "version", "op": "=", "value": 0}],
            [{"put": {"key": group_key, "value": meta}}],
            [],
        )
        kv = await self.acp.get(group_key)
        if kv is None:
            raise _Rejoin(f"group {self.group!r} vanished while joining")
        self._start = group_start(kv)
        self.lease = await self.acp.grant(self.options.lease_ttl, id=secrets.randbits(62) + 1)
        tg.create_task(self._keepalive(self.lease))
        await self.acp.put(
            self.layout.member_key(self.group, self.member_id),
            json.dumps({"since": time.time()}),
            lease=self.lease,
        )
        revision, keys = await self._list(self.layout.group_prefix(self.group))
        self._view = _View(set(), {}, {})
        for item in keys:
            self._apply_group_kv(item, deleted=False)
        self._reconcile()
        return revision

    async def _list(self, prefix: str) -> tuple[int, list[KeyValue]]:
        keys: list[KeyValue] = []
        revision = 0
        async for page in self.acp.pages(prefix):
            revision = page.revision
            keys.extend(page.kvs)
        return revision, keys

    # -- side tasks: they only feed the inbox -------------------------------------------

    async def _keepalive(self, lease: int) -> None:
        try:
            async for _ in self.acp.registry.keepalive_stream(lease):
                pass
        except NotFound:
            raise _Rejoin(f"lease {lease} is gone") from None
        raise _Rejoin("the keep-alive stream ended")

    async def _watch_group(self, start: int) -> None:
        assert self.group is not None
        try:
            async for event in self.acp.watch(
                prefix=self.layout.group_prefix(self.group), start_revision=start
            ):
                self._inbox.put_nowait(("group", event))
        except WatchCompacted as error:
            raise _Rejoin(f"group watch compacted: {error}") from None

    async def _watch_messages(self, start: int) -> None:
        parse, owns, busy = self.layout.parse_message_key, self.machine.owns, self._busy
        try:
            async for event in self.acp.watch(
                prefix=self.layout.messages_prefix, start_revision=start
            ):
                if event.type != "put" or event.kv.version != 1:
                    continue  # deletes (retention) and rewrites (a repeated id) bring nothing
                parsed = parse(event.kv.key)
                if parsed is None or parsed[0] >= MAX_PARTITIONS:
                    continue
                if not (owns(parsed[0]) or parsed[0] in busy):
                    continue
                message = message_of(self.layout, event.kv)
                if message is not None:
                    self._inbox.put_nowait(("msg", message))
        except WatchCompacted as error:
            raise _Rejoin(f"message watch compacted: {error}") from None

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.commit_interval)
            await self._commit()

    async def _commit(self) -> None:
        assert self.group is not None and self.lease is not None
        marks = {
            p: mark
            for p, mark in self.machine.watermarks().items()
            if self._committed.get(p) != mark and p not in self._busy
        }
        if not marks:
            return
        compare = [
            {
                "key": self.layout.claim_key(self.group, p),
                "target": "lease",
                "op": "=",
                "value": self.lease,
            }
            for p in marks
        ]
        ops = [
            {"put": {"key": self.layout.offset_key(self.group, p), "value": str(m)}}
            for p, m in marks.items()
        ]
        try:
            answer = await self.acp.txn(compare, ops, [])
        except ShoalError as error:
            log.info("commit of %s/%s deferred: %s", self.topic, self.label, error)
            return
        if answer["succeeded"]:
            self._committed.update(marks)
        self._update_lag()

    # -- the main task ------------------------------------------------------------------

    async def _main(self) -> None:
        inbox, machine = self._inbox, self.machine
        while True:
            wakeup = machine.next_wakeup()
            timeout = None if wakeup is None else max(0.0, wakeup - time.monotonic())
            try:
                item = await asyncio.wait_for(inbox.get(), timeout)
            except TimeoutError:
                self._feed(Tick())
                continue
            batch: list[Message] = []
            while True:
                kind = item[0]
                if kind == "msg":
                    batch.append(item[1])
                else:
                    if batch:
                        self._feed(Arrived(tuple(batch)))
                        batch = []
                    if kind == "stop":
                        return
                    self._on(item)
                if inbox.empty():
                    break
                item = inbox.get_nowait()
            if batch:
                self._feed(Arrived(tuple(batch)))

    def _on(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "result":
            _, generation, stimulus = item
            if generation == self.generation:
                self._feed(stimulus)
        elif kind == "group":
            self._apply_group_event(item[1])
            self._reconcile()
        elif kind == "assigned":
            _, partition, committed = item
            self._busy.discard(partition)
            self._committed[partition] = committed
            self._feed(Assigned(partition, committed))
        elif kind == "loaded":
            self._feed(Loaded(item[1], item[2]))
        elif kind == "unbusy":
            self._busy.discard(item[1])
            self._reconcile()
        elif kind == "drain":
            for p in sorted(self.machine.partitions):
                self._feed(Revoke(p))
            self._check_released()
        elif kind == "rejoin":
            raise _Rejoin(item[1])

    def _feed(self, stimulus: Stimulus) -> None:
        self._execute(self.machine.handle(stimulus, time.monotonic()))

    def _execute(self, instructions: list[Instruction]) -> None:
        for instruction in instructions:
            if isinstance(instruction, Deliver):
                self._deliver(instruction.message)
            elif isinstance(instruction, DeadLetter):
                self._spawn(self._dead_letter(instruction))
            elif isinstance(instruction, Released):
                self._busy.add(instruction.partition)
                self._spawn(
                    self._release(instruction.partition, instruction.committed, self.generation)
                )

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- group view and assignment -----------------------------------------------------

    def _apply_group_event(self, event: Event) -> None:
        self._apply_group_kv(event.kv, deleted=event.type == "delete")

    def _apply_group_kv(self, kv: KeyValue, deleted: bool) -> None:
        assert self.group is not None
        parsed = self.layout.parse_group_key(self.group, kv.key)
        if parsed is None:
            return
        kind, name = parsed
        if kind == "members":
            if deleted:
                self._view.members.discard(name)
                if name == self.member_id and not self._stopping:
                    self._inbox.put_nowait(("rejoin", "my member key was deleted"))
            else:
                self._view.members.add(name)
        elif kind == "claims" and name.isdigit():
            p = int(name)
            if deleted:
                self._view.claims.pop(p, None)
                self._view.claim_leases.pop(p, None)
            else:
                self._view.claims[p] = kv.value
                self._view.claim_leases[p] = kv.lease or 0

    def _reconcile(self) -> None:
        if self.group is None or self._stopping:
            return
        live = [p for p in self.machine.partitions]
        draining = {s.partition for s in self.machine.stats() if s.draining}
        moves = plan(
            self.member_id,
            self._view.members,
            self._view.claims,
            live,
            self.config.partitions,
            draining,
            self._busy,
        )
        for p in moves.lost:
            self._feed(Lost(p))
            self._committed.pop(p, None)
        for p in moves.revoke:
            self._feed(Revoke(p))
        for p in moves.claim:
            self._busy.add(p)
            self._spawn(self._claim(p, self.generation))
        for p in moves.adopt:
            self._busy.add(p)
            self._spawn(self._adopt(p, self.generation))
        self._update_lag()

    async def _claim(self, partition: int, generation: int) -> None:
        assert self.group is not None and self.lease is not None
        claim = self.layout.claim_key(self.group, partition)
        member = self.layout.member_key(self.group, self.member_id)
        try:
            answer = await self.acp.txn(
                [
                    {"key": claim, "target": "version", "op": "=", "value": 0},
                    {"key": member, "target": "lease", "op": "=", "value": self.lease},
                ],
                [
                    {"put": {"key": claim, "value": self.member_id, "lease": self.lease}},
                    {"get": {"key": self.layout.offset_key(self.group, partition)}},
                ],
                [],
            )
        except ShoalError as error:
            log.info("claim of %s/%s/%d unsure: %s", self.topic, self.label, partition, error)
            answer = None
        if generation != self.generation:
            return
        if answer is None or not answer["succeeded"]:
            self._put(generation, ("unbusy", partition))
            return
        kvs = answer["responses"][1]["get"]["kvs"]
        await self._load(partition, generation, kvs[0]["value"] if kvs else None)

    async def _adopt(self, partition: int, generation: int) -> None:
        assert self.group is not None
        try:
            kv = await self.acp.get(self.layout.offset_key(self.group, partition))
        except ShoalError:
            self._put(generation, ("unbusy", partition))
            return
        if generation == self.generation:
            await self._load(partition, generation, kv.value if kv else None)

    async def _load(self, partition: int, generation: int, offset: str | None) -> None:
        committed = int(offset) if offset and offset.isdigit() else self._start
        self._put(generation, ("assigned", partition, committed))
        try:
            messages = await self.backend.partition_messages(
                self.layout, self.config, partition, committed
            )
        except Exception as error:
            self._put(generation, ("rejoin", f"listing partition {partition}: {error}"))
            return
        self._put(generation, ("loaded", partition, tuple(messages)))

    async def _release(self, partition: int, committed: int, generation: int) -> None:
        assert self.group is not None and self.lease is not None
        claim = self.layout.claim_key(self.group, partition)
        with contextlib.suppress(ShoalError):
            await self.acp.txn(
                [{"key": claim, "target": "lease", "op": "=", "value": self.lease}],
                [
                    {
                        "put": {
                            "key": self.layout.offset_key(self.group, partition),
                            "value": str(committed),
                        }
                    },
                    {"delete": {"key": claim}},
                ],
                [],
            )
        if generation == self.generation:
            self._committed.pop(partition, None)
        self._put(generation, ("unbusy", partition))
        self._check_released()

    def _check_released(self) -> None:
        if self._stopping and not self.machine.partitions:
            self._released.set()

    # -- handlers -------------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        metrics.DELIVERED.labels(self.topic, self.label).inc()
        if message.attempt > 1:
            metrics.REDELIVERIES.labels(self.topic, self.label).inc()
        self._spawn(self._run_handler(message, self.generation))

    async def _run_handler(self, message: Message, generation: int) -> None:
        error: BaseException | None = None
        try:
            if self._async_handler:
                await self.handler(message)  # type: ignore[misc]
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._pool, self.handler, message)
        except asyncio.CancelledError:
            raise
        except Exception as caught:
            error = caught
            log.debug(
                "handler failed on %s/%d@%d: %r",
                self.topic,
                message.partition,
                message.offset,
                caught,
            )
        result = outcome(message, error)
        if isinstance(result, Acked):
            metrics.ACKED.labels(self.topic, self.label).inc()
        self._put(generation, ("result", generation, result))

    async def _dead_letter(self, instruction: DeadLetter) -> None:
        message, generation = instruction.message, self.generation
        target = self.config.dead_letter_topic(self.topic)
        headers = dict(message.headers)
        headers.update(
            {
                "x-shoal-topic": self.topic,
                "x-shoal-offset": str(message.offset),
                "x-shoal-group": self.label,
                "x-shoal-attempts": str(instruction.attempts),
                "x-shoal-reason": instruction.reason[:1000],
            }
        )
        stimulus: Stimulus
        try:
            await self.backend.publish(
                target,
                message.payload,
                key=message.key,
                headers=headers,
                id=f"{self.label or 'plain'}.{message.id}"[:128],
            )
            metrics.DEAD_LETTERS.labels(self.topic, self.label).inc()
            stimulus = Acked(message.partition, message.offset)
        except Exception as error:
            log.warning("dead letter of %s@%d failed: %s", self.topic, message.offset, error)
            stimulus = Failed(message.partition, message.offset, None, instruction.reason)
        self._put(generation, ("result", generation, stimulus))

    def _update_lag(self) -> None:
        lag = sum(s.waiting + s.in_flight for s in self.machine.stats())
        metrics.LAG.labels(self.topic, self.label).set(lag)


class _Stopped(Exception):
    pass
