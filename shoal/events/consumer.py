"""The I/O shell of one consumer on the built-in backend: lease, claims, watches, commits.

Theory of operation (docs/events.md has the picture).

1. Join: make sure the group exists, grant a lease and hold it over the leader's
   keep-alive stream with revoke-on-close (the connection is the lease: when this process
   dies its claims are deleted at once), put `members/{me}` on it, and list the group's
   keys -- the view -- at revision R.
2. Two watches from R + 1: the group's keys (members come and go, claims change hands)
   and the messages of the partitions this member owns or is taking (one watch of a
   prefix set, so a member of a group of n receives about 1/n of the topic, not all of
   it). After every change of the view `assignment.plan` says what to claim, adopt,
   hand back or forget. When that set changes the message watch is reopened from the
   last revision it delivered; a partition being taken is in the set before it is
   listed, so nothing falls between the listing and the watch (what comes twice, the
   state machine drops by offset).
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
from typing import TYPE_CHECKING

from shoal.client import Event, KeyValue, NotFound, ShoalError, WatchCompacted

from .delivery import Assigned, Loaded
from .errors import EventsError
from .handlers import Handler
from .model import MAX_PARTITIONS, Layout, Message, TopicConfig, first_offset_after
from .shell import ConsumerShell, Rejoin, Stopped, View, every
from .stored import group_start, message_of
from .types import SubscribeOptions

if TYPE_CHECKING:
    from .builtin import BuiltinBackend

__all__ = ["Consumer"]

log = logging.getLogger("shoal.events.consumer")

RETENTION_INTERVAL = 60.0


class Consumer(ConsumerShell):
    """A consumer on the built-in backend (see the module docstring)."""

    transient_errors = (EventsError, ShoalError)

    def __init__(
        self,
        backend: BuiltinBackend,
        layout: Layout,
        config: TopicConfig,
        group: str | None,
        handler: Handler,
        options: SubscribeOptions,
    ) -> None:
        super().__init__(layout.topic, config, group, handler, options, backend.publish)
        self.backend, self.acp, self.layout = backend, backend.acp, layout
        self.lease: int | None = None
        self._committed: dict[int, int] = {}
        self._start = 0
        self._watched: frozenset[int] | None = None  # the message watch's; None: all
        self._rewatch = asyncio.Event()  # the message watch must cover other partitions
        self._position = 0  # the last revision the message watch delivered

    def _on_reset(self) -> None:
        self._committed.clear()

    def _on_assigned(self, partition: int, committed: int) -> None:
        self._committed[partition] = committed

    def _on_lost(self, partition: int) -> None:
        self._committed.pop(partition, None)

    async def _leave(self) -> None:
        if self.lease is not None:
            with contextlib.suppress(ShoalError):
                await self.acp.revoke(self.lease)
            self.lease = None

    async def _run_once(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.group is None:
                revision = await self._start_plain()
            else:
                revision = await self._join(tg)
                tg.create_task(self._watch_group(revision + 1))
                tg.create_task(self._commit_loop())
                tg.create_task(self._retention_loop())
            tg.create_task(self._watch_messages(revision + 1))
            self.joined.set()
            await self._main()
            raise Stopped

    async def _start_plain(self) -> int:
        """Own every partition from `from_offset` (or where the last run got to, or now);
        the revision to watch after."""
        revision = (await self.acp.cluster_status()).revision
        start = self._resume_at if self._resume_at is not None else self.options.from_offset
        now = time.monotonic()
        for p in range(self.config.partitions):
            first = first_offset_after(revision) if start is None else start
            self.machine.handle(Assigned(p, first), now)
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
            raise Rejoin(f"group {self.group!r} vanished while joining")
        self._start = group_start(kv)
        self.lease = await self.acp.grant(self.options.lease_ttl, id=secrets.randbits(62) + 1)
        tg.create_task(self._keepalive(self.lease))
        await self.acp.put(
            self.layout.member_key(self.group, self.member_id),
            json.dumps({"since": time.time()}),
            lease=self.lease,
        )
        revision, keys = await self._list(self.layout.group_prefix(self.group))
        self._view = View()
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

    async def _keepalive(self, lease: int) -> None:
        try:
            async for _ in self.acp.registry.keepalive_stream(lease):
                pass
        except NotFound:
            raise Rejoin(f"lease {lease} is gone") from None
        raise Rejoin("the keep-alive stream ended")

    async def _watch_group(self, start: int) -> None:
        assert self.group is not None
        try:
            async for event in self.acp.watch(
                prefix=self.layout.group_prefix(self.group), start_revision=start
            ):
                self._inbox.put_nowait(("group", event))
        except WatchCompacted as error:
            raise Rejoin(f"group watch compacted: {error}") from None

    def _wanted(self) -> frozenset[int] | None:
        """The partitions whose messages this member needs; None for all of them."""
        if self.group is None:
            return None
        wanted = self.machine.partitions | self._busy
        return None if len(wanted) >= self.config.partitions else frozenset(wanted)

    def _partitions_moved(self) -> None:
        # Reopened when the set grows (or the partitions being taken would be missed) and
        # when it shrinks (or a member that handed half its partitions back would go on
        # receiving them); reconciles that change nothing cost nothing.
        if self._wanted() != self._watched:
            self._rewatch.set()

    async def _watch_messages(self, start: int) -> None:
        """The message watch (step 2), reopened wider whenever `_taking` asks."""
        self._position = start
        while True:
            self._rewatch.clear()
            wanted = self._wanted()
            self._watched = wanted
            if wanted is not None and not wanted:
                await self._rewatch.wait()
                continue
            reader = asyncio.ensure_future(self._read_messages(wanted, self._position))
            widen = asyncio.ensure_future(self._rewatch.wait())
            try:
                await asyncio.wait((reader, widen), return_when=asyncio.FIRST_COMPLETED)
            finally:
                widen.cancel()
                if not reader.done():
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
            if not reader.cancelled():
                reader.result()  # Rejoin or a transient error: the consumer restarts

    async def _read_messages(self, partitions: frozenset[int] | None, start: int) -> None:
        parse, owns, busy = self.layout.parse_message_key, self.machine.owns, self._busy
        if partitions is None:
            stream = self.acp.watch(prefix=self.layout.messages_prefix, start_revision=start)
        else:
            prefixes = [self.layout.partition_prefix(p) for p in sorted(partitions)]
            stream = self.acp.watch(prefixes=prefixes, start_revision=start)
        try:
            async for event in stream:
                # Reopened from here, the events of this revision come again: dropped by
                # offset, while resuming after it could lose the rest of a batch.
                self._position = event.revision
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
            raise Rejoin(f"message watch compacted: {error}") from None

    async def _retention_loop(self) -> None:
        """Retention is applied by whoever consumes a partition (any group's owner: the
        deletes are idempotent), so a topic with consumers needs no janitor of its own."""
        await every(RETENTION_INTERVAL, self._retain_owned)

    async def _retain_owned(self) -> None:
        owned = sorted(self.machine.partitions)
        if not owned:
            return
        try:
            await self.backend.trim(self.topic, partitions=owned)
        except EventsError as error:
            log.info("retention of %s deferred: %s", self.topic, error)

    async def _commit_loop(self) -> None:
        await every(self.options.commit_interval, self._commit)

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
            else:
                self._view.claims[p] = kv.value

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
        self._put(generation, ("handed-back", partition))
        self._check_released()
