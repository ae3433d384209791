"""The NATS JetStream adapter: the same API and guarantees, on a nats-server with -js.

Theory of operation. A topic is one stream (`shoal_ev_{topic}`) whose subjects are its
partitions (`shoal.ev.{topic}.{p}`); a message's offset is its stream sequence, so offsets
grow with publication order across the whole topic. A publish is one `js.publish` of the
record (the same JSON as Redis') to its partition's subject; with an id it carries
`Nats-Msg-Id`, and JetStream drops a repeat within the stream's duplicate window
(`dedup_window`, 2 minutes by default) and answers the first message's sequence.

Groups do not use JetStream's durable consumers; they run the claim protocol of the other
backends (`assignment.plan` over a view of members and claims, the shared consumer shell
and state machine) on two JetStream key-value buckets:

    shoal_events                  file store     topic.{t}  group.{t}.{g}  offset.{t}.{g}.{p}
    shoal_events_leases_{ttl ms}  memory store,  m.{t}.{g}.{member}  c.{t}.{g}.{p}
                                  max_age = claim_ttl

A member key and a claim live while they are rewritten: the bucket's `max_age` drops an
entry `claim_ttl` (1.2 s) after its last write, so a consumer that dies -- kill -9 --
loses its claims within 1.2 s and the others take them over. A claim is `create` (only
if absent), renewed every ttl/4 by `update` on its last revision (so a claim that
expired and was taken by another is never renewed by its old holder) and handed back by
a `delete` on that revision. The owner of a partition reads it with an ordered push
consumer from the group's committed offset; every `commit_interval` it writes its
watermark by `update` on the offset's last revision -- a commit that finds the offset
changed by someone else (a replay, an owner it overlapped with) reloads the partition
from what is stored instead of overwriting it. A replay writes the offsets, then deletes
the claims.

Why not a durable pull consumer per group: JetStream hands each message to whichever
member pulls, so with more than one message in flight two messages of one key reach two
members at once and finish out of order, and `nak(delay)` lets a key's later messages
overtake the delayed one; keeping order would mean `max_ack_pending=1` per partition. And
after a kill -9 JetStream redelivers only when `ack_wait` expires -- under 2 s would make
every longer handler send progress acks -- while newer messages go out meanwhile.
(Pinned consumers, which would make a durable exclusive, come with nats-server 2.11.)

What JetStream does not give (docs/events.md): on nats-server 2.9 an acknowledgement
means "written to the operating system", not fsync'd -- the file store syncs every two
minutes, and 2.9 has no `sync_interval` option (2.10 added `sync_interval: always`).

The nats library is imported here only; its errors become `BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from . import metrics
from .delivery import Assigned, Loaded, Lost
from .errors import BackendUnavailable, EventsError, InvalidEvent, UnknownGroup
from .handlers import Handler
from .model import Message as EventMessage
from .model import (
    TopicConfig,
    check_group,
    check_partitions_kept,
    check_publish,
    check_topic,
    decode_record,
    encode_record,
    partition_for,
)
from .shell import ConsumerShell, Rejoin, Stopped, View, every
from .types import GroupInfo, GroupLag, PartitionLag, Published, SubscribeOptions

__all__ = ["NatsBackend", "NatsConsumer", "token"]

log = logging.getLogger("shoal.events.nats")

META_BUCKET = "shoal_events"
READER_HEARTBEAT = 1.0  # an ordered consumer that misses these is recreated by nats-py


def token(name: str) -> str:
    """A topic or group name as one subject token and key part: names allow `.` (a
    token separator) but never `=`, so replacing one by the other is reversible."""
    return name.replace(".", "=")


def untoken(part: str) -> str:
    return part.replace("=", ".")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except nats.js.errors.APIError as error:
        raise BackendUnavailable(f"nats refused it: {error.description or error}") from error
    except (nats.errors.Error, OSError, TimeoutError) as error:
        raise BackendUnavailable(f"nats is unavailable: {type(error).__name__} {error}") from error


@dataclass(frozen=True, slots=True)
class _Names:
    """Where one topic lives: its stream, subjects and keys."""

    topic: str

    @property
    def tok(self) -> str:
        return token(self.topic)

    @property
    def stream(self) -> str:
        return f"shoal_ev_{self.tok}"

    def subject(self, p: int) -> str:
        return f"shoal.ev.{self.tok}.{p}"

    @property
    def subjects(self) -> str:
        return f"shoal.ev.{self.tok}.*"

    @property
    def config_key(self) -> str:
        return f"topic.{self.tok}"

    def group_key(self, group: str) -> str:
        return f"group.{self.tok}.{token(group)}"

    @property
    def groups_filter(self) -> str:
        return f"group.{self.tok}.*"

    def offset_key(self, group: str, p: int) -> str:
        return f"offset.{self.tok}.{token(group)}.{p}"

    def member_key(self, group: str, member: str) -> str:
        return f"m.{self.tok}.{token(group)}.{member}"

    def members_filter(self, group: str) -> str:
        return f"m.{self.tok}.{token(group)}.*"

    def claim_key(self, group: str, p: int) -> str:
        return f"c.{self.tok}.{token(group)}.{p}"


@dataclass(frozen=True, slots=True)
class ClaimView:
    """A view of a group with the revision of every claim (to renew or hand one back)."""

    view: View
    revisions: dict[int, int]


class NatsBackend:
    """shoal.events on NATS JetStream (`url`: `nats://host:port`, comma-separated for a
    cluster). `claim_ttl`: how long a silent consumer keeps its partitions; `dedup_window`:
    how long a message id is remembered (JetStream's duplicate window, per topic)."""

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        claim_ttl: float = 1.2,
        poll_interval: float = 0.1,
        dedup_window: float = 120.0,
        replicas: int = 1,
        timeout: float = 5.0,
    ) -> None:
        if claim_ttl < 0.3:
            raise InvalidEvent(f"claim_ttl must be >= 0.3 s, got {claim_ttl}")
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        self.claim_ttl, self.poll_interval = claim_ttl, poll_interval
        self.dedup_window, self.replicas, self.timeout = dedup_window, replicas, timeout
        self.lease_bucket = f"shoal_events_leases_{int(claim_ttl * 1000)}"
        self._nc: Any = None
        self._js: Any = None
        self.meta: KeyValue | None = None
        self.leases: KeyValue | None = None
        self._lock = asyncio.Lock()
        # The connection's epoch: +1 at every reconnect. The server may have restarted
        # (the memory bucket of leases and every reader with it are gone), so consumers
        # start over and the buckets are made again.
        self.epoch = 0
        self._ready_epoch = -1
        self._reconnected = asyncio.Event()
        self._configs: dict[str, TopicConfig] = {}
        self._streams: set[str] = set()

    # -- the connection -----------------------------------------------------------------

    async def _on_reconnect(self) -> None:
        self.epoch += 1
        self._streams.clear()
        self._reconnected.set()
        self._reconnected = asyncio.Event()

    async def _on_error(self, error: Exception) -> None:
        log.debug("nats: %s", error)

    async def ready(self) -> int:
        """Connect (once) and make sure both buckets exist; the connection's epoch."""
        async with self._lock:
            if self._nc is None:
                with translated():
                    self._nc = await nats.connect(
                        self.servers,
                        connect_timeout=max(1, int(self.timeout)),
                        reconnect_time_wait=0.25,
                        max_reconnect_attempts=-1,
                        reconnected_cb=self._on_reconnect,
                        error_cb=self._on_error,
                    )
                self._js = self._nc.jetstream(timeout=self.timeout)
            # Until the buckets belong to the current connection: a reconnect while they
            # were made may have been to a restarted server without the leases bucket.
            while self._ready_epoch != self.epoch:
                epoch = self.epoch
                self.meta = await self._bucket(META_BUCKET, StorageType.FILE, None)
                self.leases = await self._bucket(
                    self.lease_bucket, StorageType.MEMORY, self.claim_ttl
                )
                self._ready_epoch = epoch
            return self._ready_epoch

    async def _bucket(self, name: str, storage: StorageType, ttl: float | None) -> KeyValue:
        with translated():
            try:
                kv: KeyValue = await self._js.key_value(name)
                return kv
            except nats.js.errors.BucketNotFoundError:
                pass
            created: KeyValue = await self._js.create_key_value(
                bucket=name, history=1, storage=storage, ttl=ttl, replicas=self.replicas
            )
            return created

    async def reconnected(self, epoch: int) -> None:
        """Return once the connection is newer than `epoch`."""
        while self.epoch == epoch:
            await self._reconnected.wait()

    @property
    def js(self) -> Any:
        return self._js

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._nc.close()
            self._nc = None

    def names(self, topic: str) -> _Names:
        return _Names(check_topic(topic))

    # -- topics -------------------------------------------------------------------------

    def _stream_config(self, names: _Names, config: TopicConfig) -> StreamConfig:
        retention = config.retention_seconds
        return StreamConfig(
            name=names.stream,
            subjects=[names.subjects],
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            max_age=retention,
            # JetStream limits a stream's size, not a subject's: the per-partition budget
            # times the partitions, oldest first across the topic (docs/events.md).
            max_bytes=(config.retention_bytes * config.partitions)
            if config.retention_bytes is not None
            else -1,
            duplicate_window=min(self.dedup_window, retention),
        )

    async def _ensure_stream(self, names: _Names, config: TopicConfig, update: bool) -> None:
        if names.stream in self._streams and not update:
            return
        wanted = self._stream_config(names, config)
        with translated():
            try:
                await self._js.stream_info(names.stream)
                if update:
                    await self._js.update_stream(wanted)
            except nats.js.errors.NotFoundError:
                await self._js.add_stream(wanted)
        self._streams.add(names.stream)

    async def topic_config(self, topic: str, create: bool = True) -> TopicConfig:
        cached = self._configs.get(topic)
        if cached is not None:
            return cached
        names = self.names(topic)
        await self.ready()
        assert self.meta is not None
        with translated():
            try:
                entry = await self.meta.get(names.config_key)
            except nats.js.errors.KeyNotFoundError:
                entry = None
        if entry is None:
            if not create:
                raise InvalidEvent(f"topic {topic!r} does not exist")
            return await self.create_topic(topic, TopicConfig())
        config = TopicConfig.from_json(json.loads(entry.value or b"{}"))
        await self._ensure_stream(names, config, update=False)
        self._configs[topic] = config
        return config

    async def create_topic(self, topic: str, config: TopicConfig) -> TopicConfig:
        names = self.names(topic)
        await self.ready()
        assert self.meta is not None
        value = json.dumps(config.to_json()).encode()
        with translated():
            try:
                await self.meta.create(names.config_key, value)
                changed = True
            except nats.js.errors.KeyWrongLastSequenceError:
                existing = TopicConfig.from_json(
                    json.loads((await self.meta.get(names.config_key)).value or b"{}")
                )
                check_partitions_kept(topic, existing, config)
                changed = existing != config
                if changed:
                    await self.meta.put(names.config_key, value)
        await self._ensure_stream(names, config, update=changed)
        self._configs[topic] = config
        return config

    # -- publish ------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> Published:
        names = self.names(topic)
        body, key, fields, message_id = check_publish(payload, key, headers, id)
        message_id = message_id or secrets.token_hex(12)
        config = await self.topic_config(topic)
        p = partition_for(key, message_id, config.partitions)
        record = encode_record(message_id, body, key, fields, time.time())
        # Only a caller's id is worth remembering: a random one is never repeated.
        hdrs = {"Nats-Msg-Id": message_id} if id is not None else None
        with translated():
            ack = await self._js.publish(
                names.subject(p), record.encode(), stream=names.stream, headers=hdrs
            )
        metrics.PUBLISHED.labels(topic).inc()
        return Published(
            topic=topic, partition=p, offset=ack.seq, id=message_id, duplicate=bool(ack.duplicate)
        )

    # -- reading ------------------------------------------------------------------------

    def message(
        self, topic: str, partition: int, seq: int, data: bytes | None
    ) -> EventMessage | None:
        try:
            return decode_record(topic, partition, seq, (data or b"").decode(), batched=False)
        except (EventsError, UnicodeDecodeError):
            return None

    async def read(self, topic: str, from_offset: int = 0, limit: int = 100) -> list[EventMessage]:
        names, config = self.names(topic), await self.topic_config(topic, create=False)
        found: list[EventMessage] = []
        seq = max(1, from_offset)
        with translated():
            while len(found) < limit:
                try:
                    raw = await self._js.get_msg(
                        names.stream, seq=seq, subject=names.subjects, next=True
                    )
                except nats.js.errors.NotFoundError:
                    break
                p = int(str(raw.subject).rsplit(".", 1)[1])
                message = self.message(topic, p, int(raw.seq), raw.data)
                if message is not None and p < config.partitions:
                    found.append(message)
                seq = int(raw.seq) + 1
        return found

    async def _probe(
        self, names: _Names, *, subject: str | None, start: int = 0, at: float | None = None
    ) -> Any:
        """An ephemeral consumer's info, made only to ask JetStream where `start` / `at`
        is (`delivered`) and how much is at or after it (`num_pending`); deleted at once."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            filter_subject=subject,
            inactive_threshold=10.0,
            mem_storage=True,
        )
        if at is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = datetime.datetime.fromtimestamp(at, datetime.UTC)
        elif start > 1:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start
        with translated():
            info = await self._js.add_consumer(names.stream, config)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_consumer(names.stream, info.name)
        return info

    # -- groups -------------------------------------------------------------------------

    async def ensure_group(self, topic: str, group: str, start: str) -> int:
        """Create `group` if it is new (starting after the last message, or at the first
        retained); the offset where a partition without a committed one begins."""
        names = self.names(topic)
        await self.ready()
        assert self.meta is not None
        with translated():
            try:
                entry = await self.meta.get(names.group_key(group))
                return int(json.loads(entry.value or b"{}").get("offset", 0))
            except nats.js.errors.KeyNotFoundError:
                pass
            offset = 0
            if start == "latest":
                info = await self._js.stream_info(names.stream)
                offset = int(info.state.last_seq) + 1
            meta = {"start": start, "offset": offset, "created": time.time()}
            try:
                await self.meta.create(names.group_key(group), json.dumps(meta).encode())
            except nats.js.errors.KeyWrongLastSequenceError:  # another member made it first
                entry = await self.meta.get(names.group_key(group))
                offset = int(json.loads(entry.value or b"{}").get("offset", 0))
        return offset

    async def _group_start(self, names: _Names, group: str) -> int:
        assert self.meta is not None
        with translated():
            try:
                entry = await self.meta.get(names.group_key(check_group(group)))
            except nats.js.errors.KeyNotFoundError:
                raise UnknownGroup(f"topic {names.topic!r} has no group {group!r}") from None
        return int(json.loads(entry.value or b"{}").get("offset", 0))

    async def _subjects(self, bucket: str, pattern: str) -> list[str]:
        """The keys of `bucket` matching `pattern` that hold an entry now (an expired one
        is gone from the stream; a deleted one leaves a marker, so members are purged)."""
        prefix = f"$KV.{bucket}."
        with translated():
            info = await self._js.stream_info(f"KV_{bucket}", subjects_filter=prefix + pattern)
        return [s[len(prefix) :] for s in (info.state.subjects or {})]

    async def committed(self, names: _Names, group: str, p: int) -> tuple[int | None, int]:
        """(the committed offset of `p` or None, the offset key's revision or 0)."""
        assert self.meta is not None
        with translated():
            try:
                entry = await self.meta.get(names.offset_key(group, p))
            except nats.js.errors.KeyNotFoundError:
                return None, 0
        text = (entry.value or b"").decode()
        return (int(text) if text.isdigit() else None), int(entry.revision or 0)

    async def view(self, topic: str, group: str, partitions: int) -> ClaimView:
        names = self.names(topic)
        await self.ready()
        assert self.leases is not None
        leases = self.leases
        members = await self._subjects(self.lease_bucket, names.members_filter(group))

        async def claim(p: int) -> tuple[int, str | None, int]:
            try:
                entry = await leases.get(names.claim_key(group, p))
            except nats.js.errors.KeyNotFoundError:
                return p, None, 0
            return p, (entry.value or b"").decode(), int(entry.revision or 0)

        with translated():
            found = await asyncio.gather(*(claim(p) for p in range(partitions)))
        return ClaimView(
            View(
                members={m.rsplit(".", 1)[1] for m in members},
                claims={p: holder for p, holder, _ in found if holder},
            ),
            {p: rev for p, holder, rev in found if holder},
        )

    async def group_names(self, topic: str) -> list[str]:
        names = self.names(topic)
        await self.ready()
        assert self.meta is not None
        keys = await self._subjects(META_BUCKET, names.groups_filter)
        return sorted(untoken(k.rsplit(".", 1)[1]) for k in keys)

    async def groups(self, topic: str) -> list[GroupInfo]:
        config = await self.topic_config(topic, create=False)
        out = []
        for name in await self.group_names(topic):
            view = (await self.view(topic, name, config.partitions)).view
            out.append(
                GroupInfo(
                    topic=topic, group=name, members=tuple(sorted(view.members)), claims=view.claims
                )
            )
        return out

    async def lag(self, topic: str, group: str) -> GroupLag:
        names, config = self.names(topic), await self.topic_config(topic, create=False)
        start = await self._group_start(names, group)
        view = (await self.view(topic, group, config.partitions)).view
        rows = []
        for p in range(config.partitions):
            offset, _ = await self.committed(names, group, p)
            committed = start if offset is None else offset
            info = await self._probe(names, subject=names.subject(p), start=committed)
            rows.append(
                PartitionLag(
                    partition=p,
                    committed=committed,
                    pending=int(info.num_pending or 0),
                    owner=view.claims.get(p),
                )
            )
        return GroupLag(topic=topic, group=group, partitions=tuple(rows))

    async def replay(
        self, topic: str, group: str, *, offset: int | None = None, at: float | None = None
    ) -> dict[int, int]:
        """Move `group` to `offset` (a stream sequence) or to the first message at or
        after `at` in every partition: write the offsets, then delete the claims, so
        every owner drops what it holds and loads again from the new offsets."""
        if (offset is None) == (at is None):
            raise InvalidEvent("give exactly one of offset= or at=")
        if offset is not None and offset < 0:
            raise InvalidEvent(f"offset must be >= 0, got {offset}")
        names, config = self.names(topic), await self.topic_config(topic, create=False)
        await self._group_start(names, group)
        if at is not None:
            info = await self._probe(names, subject=None, at=at)
            offset = int(info.delivered.stream_seq) + 1
        assert offset is not None and self.meta is not None and self.leases is not None
        with translated():
            for p in range(config.partitions):
                await self.meta.put(names.offset_key(group, p), str(offset).encode())
            for p in range(config.partitions):
                await self.leases.delete(names.claim_key(group, p))
        return dict.fromkeys(range(config.partitions), offset)

    # -- consuming ----------------------------------------------------------------------

    async def consumer(
        self, topic: str, handler: Handler, group: str | None, options: SubscribeOptions
    ) -> NatsConsumer:
        check_topic(topic)
        if group is not None:
            check_group(group)
        config = await self.topic_config(topic)
        return NatsConsumer(self, config, topic, group, handler, options)


class _Reader:
    """One owned partition's ordered push consumer; `alive` drops what it brings after
    the partition is gone (what was queued before is dropped by the state machine)."""

    def __init__(self) -> None:
        self.alive = True
        self.sub: Any = None

    async def close(self) -> None:
        self.alive = False
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
            self.sub = None


class NatsConsumer(ConsumerShell):
    """A consumer on NATS JetStream (see the module docstring)."""

    transient_errors = (EventsError, nats.errors.Error, OSError)

    def __init__(
        self,
        backend: NatsBackend,
        config: TopicConfig,
        topic: str,
        group: str | None,
        handler: Handler,
        options: SubscribeOptions,
    ) -> None:
        super().__init__(topic, config, group, handler, options, backend.publish)
        self.backend, self.names = backend, backend.names(topic)
        self._readers: dict[int, _Reader] = {}
        self._claim_revs: dict[int, int] = {}  # partition -> revision of my claim
        self._offset_revs: dict[int, int] = {}  # partition -> revision of its offset key
        self._committed: dict[int, int] = {}
        self._view_revs: dict[int, int] = {}
        self._start = 0
        # Renewals and hand-backs take turns: a renewal racing a release would move the
        # claim's revision under the release's conditional delete and keep it alive.
        self._claims_lock = asyncio.Lock()

    @property
    def _leases(self) -> KeyValue:
        assert self.backend.leases is not None
        return self.backend.leases

    # -- the run ------------------------------------------------------------------------

    async def _run_once(self) -> None:
        epoch = await self.backend.ready()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_connection(epoch))
            if self.group is None:
                await self._start_plain()
            else:
                self._start = await self.backend.ensure_group(
                    self.topic, self.group, self.options.start
                )
                await self._heartbeat()
                self._take_view(
                    await self.backend.view(self.topic, self.group, self.config.partitions)
                )
                self._reconcile()
                tg.create_task(self._heartbeats())
                tg.create_task(self._poll())
                tg.create_task(self._commit_loop())
            self.joined.set()
            await self._main()
            raise Stopped

    async def _watch_connection(self, epoch: int) -> None:
        await self.backend.reconnected(epoch)
        raise Rejoin("the connection to nats was re-established (the server may have restarted)")

    def _on_reset(self) -> None:
        for reader in self._readers.values():
            self._spawn_quiet(reader.close())
        self._readers.clear()
        self._claim_revs.clear()
        self._offset_revs.clear()
        self._committed.clear()
        self._view_revs.clear()

    def _spawn_quiet(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _leave(self) -> None:
        for reader in list(self._readers.values()):
            await reader.close()
        self._readers.clear()
        if self.group is None or self.backend.leases is None:
            return
        with contextlib.suppress(EventsError, nats.errors.Error, OSError):
            await self._commit()
            for p, rev in list(self._claim_revs.items()):
                with contextlib.suppress(nats.js.errors.APIError):
                    await self._leases.delete(self.names.claim_key(self.group, p), last=rev)
            # A purge leaves no marker, so the others see this member gone at once.
            await self.backend.js.purge_stream(
                f"KV_{self.backend.lease_bucket}",
                subject=f"$KV.{self.backend.lease_bucket}."
                + self.names.member_key(self.group, self.member_id),
            )
        self._claim_revs.clear()

    # -- readers ------------------------------------------------------------------------

    async def _open_reader(self, partition: int, start: int, generation: int) -> None:
        reader = _Reader()
        old = self._readers.pop(partition, None)
        if old is not None:
            await old.close()
        self._readers[partition] = reader

        async def on_message(msg: Any) -> None:
            if not reader.alive:
                return
            message = self.backend.message(
                self.topic, partition, int(msg.metadata.sequence.stream), msg.data
            )
            if message is not None:
                self._put(generation, ("msg", message))

        if start > 1:
            policy, config = DeliverPolicy.BY_START_SEQUENCE, ConsumerConfig(opt_start_seq=start)
        else:
            policy, config = DeliverPolicy.ALL, ConsumerConfig()
        try:
            with translated():
                sub = await self.backend.js.subscribe(
                    self.names.subject(partition),
                    stream=self.names.stream,
                    cb=on_message,
                    ordered_consumer=True,
                    idle_heartbeat=READER_HEARTBEAT,
                    deliver_policy=policy,
                    config=config,
                    inactive_threshold=10.0,
                )
        except EventsError as error:
            self._put(generation, ("rejoin", f"reading partition {partition}: {error}"))
            return
        if reader.alive:
            reader.sub = sub
        else:  # the partition went while the consumer was being made
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _close_reader(self, partition: int) -> None:
        reader = self._readers.pop(partition, None)
        if reader is not None:
            reader.alive = False
            self._spawn_quiet(reader.close())

    def _on_assigned(self, partition: int, committed: int) -> None:
        # Called by the main task as it takes the partition, so every message the
        # reader brings finds the partition owned.
        self._committed[partition] = committed
        self._spawn(self._open_reader(partition, committed, self.generation))

    def _on_lost(self, partition: int) -> None:
        self._close_reader(partition)
        self._claim_revs.pop(partition, None)
        self._offset_revs.pop(partition, None)
        self._committed.pop(partition, None)

    # -- the plain subscriber -----------------------------------------------------------

    async def _start_plain(self) -> None:
        start = self._resume_at if self._resume_at is not None else self.options.from_offset
        if start is None:
            with translated():
                info = await self.backend.js.stream_info(self.names.stream)
            start = int(info.state.last_seq) + 1
        start = max(1, start)
        now = time.monotonic()
        for p in range(self.config.partitions):
            self.machine.handle(Assigned(p, start), now)
            self._execute(self.machine.handle(Loaded(p, ()), now))
            await self._open_reader(p, start, self.generation)

    # -- membership and claims ----------------------------------------------------------

    async def _heartbeat(self) -> None:
        assert self.group is not None
        group = self.group
        with translated():
            await self._leases.put(self.names.member_key(group, self.member_id), b"1")

        async def renew(p: int, rev: int) -> None:
            try:
                new = await self._leases.update(
                    self.names.claim_key(group, p), self.member_id.encode(), last=rev
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                new = None  # expired and maybe taken: the view tells
            if self._claim_revs.get(p) == rev:
                if new is None:
                    del self._claim_revs[p]
                else:
                    self._claim_revs[p] = new

        async with self._claims_lock:
            with translated():
                await asyncio.gather(*(renew(p, r) for p, r in list(self._claim_revs.items())))

    async def _heartbeats(self) -> None:
        await every(self.backend.claim_ttl / 4, self._heartbeat)

    async def _poll(self) -> None:
        await every(self.backend.poll_interval, self._poll_once)

    async def _poll_once(self) -> None:
        assert self.group is not None
        view = await self.backend.view(self.topic, self.group, self.config.partitions)
        self._inbox.put_nowait(("nats-view", view))

    def _take_view(self, view: ClaimView) -> None:
        self._view, self._view_revs = view.view, view.revisions

    def _on(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "nats-view":
            self._take_view(item[1])
            self._reconcile()
        elif kind == "reload":
            # Our commit found the offset rewritten (a replay, an overlapping owner):
            # drop the partition and load it again from what is stored, if still ours.
            partition = item[1]
            if self.machine.owns(partition) and partition not in self._busy:
                self._feed_lost(partition)
                self._busy.add(partition)
                self._spawn(self._adopt(partition, self.generation))
        else:
            super()._on(item)

    def _feed_lost(self, partition: int) -> None:
        self._feed(Lost(partition))
        rev = self._claim_revs.get(partition)
        self._on_lost(partition)
        if rev is not None:
            self._claim_revs[partition] = rev  # still claimed by us: keep renewing it

    async def _claim(self, partition: int, generation: int) -> None:
        assert self.group is not None
        try:
            with translated():
                rev = await self._leases.create(
                    self.names.claim_key(self.group, partition), self.member_id.encode()
                )
        except (nats.js.errors.KeyWrongLastSequenceError, EventsError):
            self._put(generation, ("unbusy", partition))
            return
        if generation != self.generation:
            return
        self._claim_revs[partition] = rev
        await self._load(partition, generation)

    async def _adopt(self, partition: int, generation: int) -> None:
        assert self.group is not None
        try:
            with translated():
                entry = await self._leases.get(self.names.claim_key(self.group, partition))
        except (nats.js.errors.KeyNotFoundError, EventsError):
            self._put(generation, ("unbusy", partition))
            return
        if (entry.value or b"").decode() != self.member_id or generation != self.generation:
            self._put(generation, ("unbusy", partition))
            return
        self._claim_revs[partition] = int(entry.revision or 0)
        await self._load(partition, generation)

    async def _load(self, partition: int, generation: int) -> None:
        assert self.group is not None
        try:
            offset, rev = await self.backend.committed(self.names, self.group, partition)
        except EventsError as error:
            self._put(generation, ("rejoin", f"reading the offset of {partition}: {error}"))
            return
        if generation != self.generation:
            return
        self._offset_revs[partition] = rev
        committed = self._start if offset is None else offset
        # The reader starts when the main task takes "assigned" (`_on_assigned`), so it
        # brings only what follows "loaded" (empty: the reader brings everything).
        self._put(generation, ("assigned", partition, committed))
        self._put(generation, ("loaded", partition, ()))

    async def _release(self, partition: int, committed: int, generation: int) -> None:
        assert self.group is not None
        self._close_reader(partition)
        async with self._claims_lock:
            rev = self._claim_revs.pop(partition, None)
            with contextlib.suppress(EventsError, nats.errors.Error, OSError), translated():
                await self._write_offset(partition, committed)
                if rev is not None:
                    await self._leases.delete(self.names.claim_key(self.group, partition), last=rev)
        self._offset_revs.pop(partition, None)
        self._committed.pop(partition, None)
        self._put(generation, ("handed-back", partition))
        self._check_released()

    # -- commits ------------------------------------------------------------------------

    async def _write_offset(self, partition: int, offset: int) -> bool:
        """Write `offset` on the revision we read; False if someone else wrote it since."""
        assert self.group is not None
        try:
            self._offset_revs[partition] = await self.backend.meta.update(  # type: ignore[union-attr]
                self.names.offset_key(self.group, partition),
                str(offset).encode(),
                last=self._offset_revs.get(partition, 0),
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        self._committed[partition] = offset
        return True

    async def _commit_loop(self) -> None:
        await every(self.options.commit_interval, self._commit)

    async def _commit(self) -> None:
        generation = self.generation
        marks = {
            p: mark
            for p, mark in self.machine.watermarks().items()
            if self._committed.get(p) != mark and p not in self._busy and p in self._offset_revs
        }
        for p, mark in marks.items():
            try:
                with translated():
                    written = await self._write_offset(p, mark)
            except EventsError as error:
                log.info("commit of %s/%s deferred: %s", self.topic, self.label, error)
                return
            if not written:
                self._put(generation, ("reload", p))
        self._update_lag()
