"""The Redis Streams adapter: the same API and guarantees, on a Redis server.

Theory of operation. Each partition of a topic is one stream (`shoal:ev:{topic}:{p}`);
a publish is one Lua script that checks the message id's dedup key, `XADD`s the record
(trimming by age with `MINID`) and sets the dedup key -- atomically, so a retried publish
is a no-op. With `appendfsync always` on the server, the answer comes after the fsync.
A message's offset is its stream id packed into one integer (`ms << 20 | seq`).

A group is a Redis consumer group on every partition's stream (`XGROUP CREATE`, at `$`
for "latest"). Partitions are claimed exactly as on the built-in backend (the same
`assignment.plan` over the same kind of view), with Redis keys standing in for leases:
a claim is `SET claim:{p} me NX PX ttl`, renewed every ttl/4; members are a sorted set
scored by their expiry. When a consumer dies, its claims expire after `claim_ttl`
(1.2 s by default, renewed every 0.3 s) and the next owner takes the partition's
pending entries with `XAUTOCLAIM` (their delivery count is Redis'), then reads new
ones with `XREADGROUP`. A finished message is `XACK`ed (in batches every
`commit_interval`). So per-key order and "one holder per key" hold as on the built-in
backend, with Redis' pending-entries list as the committed state.

The redis library is imported here only; its errors become `BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from . import metrics
from .delivery import Assigned, Loaded
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
from .shell import ConsumerShell, Rejoin, Stopped, View, end_if_cancelled, every
from .types import GroupInfo, GroupLag, PartitionLag, Published, SubscribeOptions

__all__ = ["RedisBackend", "RedisConsumer", "offset_of", "stream_id"]

SEQ_BITS = 20

_PUBLISH = """
local prev = redis.call('GET', KEYS[2])
if prev then return {0, prev} end
local sid = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[3], '*', 'r', ARGV[1])
redis.call('SET', KEYS[2], sid, 'EX', ARGV[2])
return {1, sid}
"""

_RENEW = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2]); n = n + 1
  end
end
return n
"""

_RELEASE = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key); n = n + 1 end
end
return n
"""


def offset_of(stream_id: str | bytes) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return (int(ms) << SEQ_BITS) | int(seq or 0)


def stream_id(offset: int) -> str:
    return f"{offset >> SEQ_BITS}-{offset & ((1 << SEQ_BITS) - 1)}"


@contextlib.contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except (ConnectionError, TimeoutError, OSError) as error:
        raise BackendUnavailable(f"redis is unavailable: {error}") from error
    except RedisError as error:
        raise BackendUnavailable(f"redis failed: {error}") from error


class _Keys:
    def __init__(self, topic: str, prefix: str = "shoal:ev") -> None:
        self.topic = topic
        self.base = f"{prefix}:{topic}"

    @property
    def config(self) -> str:
        return f"{self.base}:config"

    def stream(self, p: int) -> str:
        return f"{self.base}:{p}"

    def dedup(self, message_id: str) -> str:
        return f"{self.base}:ids:{message_id}"

    @property
    def groups(self) -> str:
        return f"{self.base}:groups"

    def members(self, group: str) -> str:
        return f"{self.base}:{group}:members"

    def claim(self, group: str, p: int) -> str:
        return f"{self.base}:{group}:claim:{p}"


class RedisBackend:
    """shoal.events on Redis Streams (`url`: `redis://host:port/db`)."""

    name = "redis"

    def __init__(self, url: str, *, claim_ttl: float = 1.2, poll_interval: float = 0.1) -> None:
        # redis-py's return types are unions over its decode modes; this module reads
        # the bytes it asked for, so the client is used untyped.
        # A blocking pool: a burst of publishes waits for a connection instead of failing.
        self._pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=10)
        self.redis: Any = aioredis.Redis(connection_pool=self._pool)
        self.claim_ttl, self.poll_interval = claim_ttl, poll_interval
        self._publish = self.redis.register_script(_PUBLISH)
        self.renew = self.redis.register_script(_RENEW)
        self.release = self.redis.register_script(_RELEASE)
        self._configs: dict[str, TopicConfig] = {}
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        await self.redis.aclose()
        await self._pool.disconnect(inuse_connections=True)  # a pool we made is ours to close

    def keys(self, topic: str) -> _Keys:
        return _Keys(check_topic(topic))

    async def topic_config(self, topic: str, create: bool = True) -> TopicConfig:
        cached = self._configs.get(topic)
        if cached is not None:
            return cached
        keys = self.keys(topic)
        with translated():
            raw = await self.redis.get(keys.config)
        if raw is None:
            if not create:
                raise InvalidEvent(f"topic {topic!r} does not exist")
            return await self.create_topic(topic, TopicConfig())
        config = TopicConfig.from_json(json.loads(raw))
        self._configs[topic] = config
        return config

    async def create_topic(self, topic: str, config: TopicConfig) -> TopicConfig:
        keys = self.keys(topic)
        value = json.dumps(config.to_json())
        with translated():
            if not await self.redis.set(keys.config, value, nx=True):
                existing = TopicConfig.from_json(json.loads(await self.redis.get(keys.config)))
                check_partitions_kept(topic, existing, config)
                await self.redis.set(keys.config, value)
        self._configs[topic] = config
        return config

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> Published:
        keys = self.keys(topic)
        body, key, fields, message_id = check_publish(payload, key, headers, id)
        message_id = message_id or secrets.token_hex(12)
        config = await self.topic_config(topic)
        p = partition_for(key, message_id, config.partitions)
        now = time.time()
        record = encode_record(message_id, body, key, fields, now)
        min_id = max(0, int((now - config.retention_seconds) * 1000))
        with translated():
            fresh, sid = await self._publish(
                keys=[keys.stream(p), keys.dedup(message_id)],
                args=[record, max(1, int(config.retention_seconds)), f"{min_id}-0"],
            )
        metrics.PUBLISHED.labels(topic).inc()
        return Published(
            topic=topic, partition=p, offset=offset_of(sid), id=message_id, duplicate=not fresh
        )

    async def ensure_group(self, topic: str, group: str, start: str) -> None:
        keys, config = self.keys(topic), await self.topic_config(topic)
        with translated():
            await self.redis.sadd(keys.groups, group)
            for p in range(config.partitions):
                with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                    await self.redis.xgroup_create(
                        keys.stream(p), group, id="$" if start == "latest" else "0", mkstream=True
                    )

    async def _known_group(self, keys: _Keys, group: str) -> None:
        with translated():
            if not await self.redis.sismember(keys.groups, check_group(group)):
                raise UnknownGroup(f"topic {keys.topic!r} has no group {group!r}")

    async def view(self, topic: str, group: str, partitions: int) -> View:
        keys = self.keys(topic)
        now_ms = int(time.time() * 1000)
        with translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(keys.members(group), "-inf", now_ms)
                pipe.zrange(keys.members(group), 0, -1)
                pipe.mget([keys.claim(group, p) for p in range(partitions)])
                _, members, claims = await pipe.execute()
        return View(
            members={m.decode() for m in members},
            claims={p: c.decode() for p, c in enumerate(claims) if c is not None},
        )

    async def groups(self, topic: str) -> list[GroupInfo]:
        keys, config = self.keys(topic), await self.topic_config(topic, create=False)
        with translated():
            names = sorted(g.decode() for g in await self.redis.smembers(keys.groups))
        out = []
        for name in names:
            view = await self.view(topic, name, config.partitions)
            out.append(
                GroupInfo(
                    topic=topic, group=name, members=tuple(sorted(view.members)), claims=view.claims
                )
            )
        return out

    async def lag(self, topic: str, group: str) -> GroupLag:
        keys, config = self.keys(topic), await self.topic_config(topic, create=False)
        await self._known_group(keys, group)
        view = await self.view(topic, group, config.partitions)
        rows = []
        for p in range(config.partitions):
            with translated():
                infos = await self.redis.xinfo_groups(keys.stream(p))
            info: dict[str, Any] = next((i for i in infos if _text(i.get("name")) == group), {})
            pending = int(info.get("pending") or 0) + int(info.get("lag") or 0)
            committed = offset_of(_text(info.get("last-delivered-id") or "0-0"))
            rows.append(
                PartitionLag(
                    partition=p, committed=committed, pending=pending, owner=view.claims.get(p)
                )
            )
        return GroupLag(topic=topic, group=group, partitions=tuple(rows))

    async def replay(
        self, topic: str, group: str, *, offset: int | None = None, at: float | None = None
    ) -> dict[int, int]:
        if (offset is None) == (at is None):
            raise InvalidEvent("give exactly one of offset= or at=")
        keys, config = self.keys(topic), await self.topic_config(topic, create=False)
        await self._known_group(keys, group)
        target = offset if offset is not None else (int((at or 0) * 1000) << SEQ_BITS)
        if target < 0:
            raise InvalidEvent(f"offset must be >= 0, got {target}")
        last = stream_id(max(0, target - 1))  # SETID is the last delivered id
        with translated():
            for p in range(config.partitions):
                await self.redis.xgroup_setid(keys.stream(p), group, last)
            await self.redis.delete(*[keys.claim(group, p) for p in range(config.partitions)])
        return dict.fromkeys(range(config.partitions), target)

    async def read(self, topic: str, from_offset: int = 0, limit: int = 100) -> list[EventMessage]:
        keys, config = self.keys(topic), await self.topic_config(topic, create=False)
        found: list[EventMessage] = []
        for p in range(config.partitions):
            with translated():
                entries = await self.redis.xrange(
                    keys.stream(p), min=stream_id(from_offset), count=limit
                )
            found += [m for m in (self.message(topic, p, sid, f) for sid, f in entries) if m]
        found.sort(key=lambda m: m.offset)
        return found[:limit]

    def message(self, topic: str, partition: int, sid: Any, fields: Any) -> EventMessage | None:
        if not fields or b"r" not in fields:
            return None
        try:
            return decode_record(
                topic, partition, offset_of(sid), fields[b"r"].decode(), batched=False
            )
        except EventsError:
            return None

    async def consumer(
        self, topic: str, handler: Handler, group: str | None, options: SubscribeOptions
    ) -> RedisConsumer:
        check_topic(topic)
        if group is not None:
            check_group(group)
        config = await self.topic_config(topic)
        return RedisConsumer(self, config, topic, group, handler, options)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisConsumer(ConsumerShell):
    """A consumer on Redis Streams (see the module docstring)."""

    transient_errors = (EventsError, RedisError, OSError)

    def __init__(
        self,
        backend: RedisBackend,
        config: TopicConfig,
        topic: str,
        group: str | None,
        handler: Handler,
        options: SubscribeOptions,
    ) -> None:
        super().__init__(topic, config, group, handler, options, backend.publish)
        self.backend, self.keys = backend, backend.keys(topic)
        self.redis: Any = backend.redis
        self._acks: dict[int, list[str]] = {}
        self._ready: set[int] = set()
        self._last: dict[int, str] = {}  # plain subscriber: last id read per stream
        # Held around each read: a partition is handed back only between reads, so
        # whatever a read brought for it is pending here before the claim goes, and the
        # next owner's XAUTOCLAIM takes it (a read after the release cannot include it).
        self._reading = asyncio.Lock()

    @property
    def _ttl_ms(self) -> int:
        return int(self.backend.claim_ttl * 1000)

    def _on_reset(self) -> None:
        self._acks.clear()
        self._ready.clear()

    def _on_lost(self, partition: int) -> None:
        self._ready.discard(partition)

    def _done(self, partition: int, offset: int) -> None:
        if self.group is not None:
            self._acks.setdefault(partition, []).append(stream_id(offset))

    async def _run_once(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.group is None:
                await self._start_plain()
            else:
                await self.backend.ensure_group(self.topic, self.group, self.options.start)
                await self._heartbeat()
                self._view = await self.backend.view(self.topic, self.group, self.config.partitions)
                self._reconcile()
                tg.create_task(self._heartbeats())
                tg.create_task(self._poll())
                tg.create_task(self._ack_loop())
            tg.create_task(self._read())
            self.joined.set()
            await self._main()
            raise Stopped

    async def _leave(self) -> None:
        # A consumer cancelled so late that the backend is already closed leaves nothing
        # behind that matters (its claims and member entry expire within claim_ttl); a
        # command now would reconnect a pooled connection that nobody would close again.
        if self.group is None or self.backend.closed:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._flush_acks()
            await self.redis.zrem(self.keys.members(self.group), self.member_id)
            claims = [self.keys.claim(self.group, p) for p in range(self.config.partitions)]
            await self.backend.release(keys=claims, args=[self.member_id])

    async def _start_plain(self) -> None:
        start = self._resume_at if self._resume_at is not None else self.options.from_offset
        now = time.monotonic()
        for p in range(self.config.partitions):
            self.machine.handle(Assigned(p, start or 0), now)
            self._last[p] = "$" if start is None else stream_id(max(0, start - 1))
            messages: list[EventMessage] = []
            if start is not None:
                with translated():
                    entries = await self.redis.xrange(self.keys.stream(p), min=stream_id(start))
                messages = [
                    m for m in (self.backend.message(self.topic, p, s, f) for s, f in entries) if m
                ]
                if entries:
                    self._last[p] = _text(entries[-1][0])
            if self._last[p] == "$":
                with translated():
                    info = (
                        await self.redis.xinfo_stream(self.keys.stream(p))
                        if await self.redis.exists(self.keys.stream(p))
                        else None
                    )
                self._last[p] = _text(info["last-generated-id"]) if info else "0-0"
            self._execute(self.machine.handle(Loaded(p, tuple(messages)), now))
            self._ready.add(p)

    async def _heartbeat(self) -> None:
        assert self.group is not None
        expiry = int(time.time() * 1000) + self._ttl_ms
        with translated():
            await self.redis.zadd(self.keys.members(self.group), {self.member_id: expiry})
            held = sorted(self.machine.partitions | self._busy)
            if held:
                await self.backend.renew(
                    keys=[self.keys.claim(self.group, p) for p in held],
                    args=[self.member_id, self._ttl_ms],
                )

    async def _heartbeats(self) -> None:
        await every(self.backend.claim_ttl / 4, self._heartbeat)

    async def _poll(self) -> None:
        await every(self.backend.poll_interval, self._poll_once)

    async def _poll_once(self) -> None:
        assert self.group is not None
        view = await self.backend.view(self.topic, self.group, self.config.partitions)
        self._inbox.put_nowait(("view", view))

    async def _ack_loop(self) -> None:
        await every(self.options.commit_interval, self._flush_acks)

    async def _flush_acks(self) -> None:
        if not self._acks or self.group is None:
            return
        acks, self._acks = self._acks, {}
        with translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for p, ids in acks.items():
                    pipe.xack(self.keys.stream(p), self.group, *ids)
                await pipe.execute()

    async def _read(self) -> None:
        while True:
            end_if_cancelled()
            ready = sorted(p for p in self._ready if self.machine.owns(p))
            if not ready:
                await asyncio.sleep(0.02)
                continue
            async with self._reading:
                ready = [p for p in ready if self.machine.owns(p)]
                if not ready:
                    continue
                with translated():
                    if self.group is None:
                        streams = {self.keys.stream(p): self._last[p] for p in ready}
                        answer = await self.redis.xread(streams, count=500, block=100)
                    else:
                        streams = {self.keys.stream(p): ">" for p in ready}
                        answer = await self.redis.xreadgroup(
                            self.group, self.member_id, streams, count=500, block=100
                        )
            for name, entries in answer or []:
                p = int(_text(name).rsplit(":", 1)[1])
                for sid, fields in entries:
                    if self.group is None:
                        self._last[p] = _text(sid)
                    message = self.backend.message(self.topic, p, sid, fields)
                    if message is not None:
                        self._inbox.put_nowait(("msg", message))

    async def _claim(self, partition: int, generation: int) -> None:
        assert self.group is not None
        try:
            with translated():
                taken = await self.redis.set(
                    self.keys.claim(self.group, partition), self.member_id, nx=True, px=self._ttl_ms
                )
        except EventsError:
            taken = None
        if not taken:
            self._put(generation, ("unbusy", partition))
            return
        await self._adopt(partition, generation)

    async def _adopt(self, partition: int, generation: int) -> None:
        assert self.group is not None
        self._put(generation, ("assigned", partition, 0))
        stream, messages = self.keys.stream(partition), []
        cursor = "0-0"
        try:
            with translated():
                while True:
                    answer = await self.redis.xautoclaim(
                        stream, self.group, self.member_id, 0, cursor, count=500
                    )
                    cursor, entries = _text(answer[0]), answer[1]
                    for sid, fields in entries:
                        message = self.backend.message(self.topic, partition, sid, fields)
                        if message is not None:
                            messages.append(message)
                    if cursor == "0-0":
                        break
        except EventsError as error:
            self._put(generation, ("rejoin", f"taking over partition {partition}: {error}"))
            return
        self._put(generation, ("loaded", partition, tuple(messages)))
        self._put(generation, ("ready", partition))

    async def _release(self, partition: int, committed: int, generation: int) -> None:
        assert self.group is not None
        async with self._reading:  # no read of this stream may be under way: see _read
            with contextlib.suppress(EventsError, RedisError, OSError):
                await self._flush_acks()
                await self.backend.release(
                    keys=[self.keys.claim(self.group, partition)], args=[self.member_id]
                )
        self._put(generation, ("handed-back", partition))
        self._check_released()

    def _on(self, item: tuple[Any, ...]) -> None:
        if item[0] == "ready":
            self._ready.add(item[1])
            return
        super()._on(item)


del Rejoin  # raised by the shell; imported for its docs' sake only
