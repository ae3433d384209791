"""The built-in backend: topics, messages and consumer groups as keys in the control
plane's store (docs/events.md says why, with the numbers).

Theory of operation. A publish is one write of the message's key (see `model.Layout`),
so it is acknowledged exactly when a KV write is: after a majority fsync'd it, in the
node's group commit with every other write of that moment. The message's offset comes
from the write's revision (`model.offset_for`). Without an id the key is new (a random
id), so publishes are batched (`batching.Batcher`: a lone one is a plain `PUT`, the
node's fast path; those that arrive meanwhile go together as one transaction); with the
caller's id it is a transaction "put if absent, else read it", so a repeat changes
nothing and answers the first message's offset. Topic settings are one key, created on
first use with the defaults unless `create_topic` came first.

Group administration (`groups`, `lag`, `replay`, `trim`) reads and writes the group's
keys directly; consumers (shoal/events/consumer.py) notice through their watches. A
replay is one transaction that sets every partition's offset and deletes every claim,
so each consumer drops what it holds and claims again from the new offsets.

Errors from the control-plane client are translated here into shoal.events' own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from shoal.client import AsyncControlPlane, BadRequest, KeyValue, ShoalError, Unavailable

from . import metrics
from .batching import Batcher
from .consumer import Consumer
from .errors import BackendUnavailable, EventsError, InvalidEvent, UnknownGroup
from .handlers import Handler
from .model import (
    Layout,
    Message,
    TopicConfig,
    check_group,
    check_partitions_kept,
    check_publish,
    check_topic,
    encode_record,
    offset_for,
    partition_for,
)
from .stored import group_start, message_of, split_group
from .types import GroupInfo, GroupLag, PartitionLag, Published, SubscribeOptions

__all__ = ["BuiltinBackend", "translated"]

ROOT = "/events"


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn the control-plane client's errors raised inside the block into ours."""
    try:
        yield
    except Unavailable as error:
        raise BackendUnavailable(f"the control plane is unavailable: {error.message}") from error
    except BadRequest as error:
        raise InvalidEvent(f"the control plane refused it: {error.message}") from error
    except ShoalError as error:
        raise EventsError(f"the control plane failed: {error.message}") from error


def new_id() -> str:
    return secrets.token_hex(12)


class BuiltinBackend:
    """shoal.events on the control plane: `endpoints` as `shoal.client` takes them."""

    name = "shoal"

    def __init__(
        self,
        endpoints: str | Sequence[str] = "http://127.0.0.1:7700",
        *,
        timeout: float = 10.0,
        retry_budget: float = 8.0,
        root: str = ROOT,
        control_plane: AsyncControlPlane | None = None,
    ) -> None:
        # A client the caller gives (a service's own) is used as it is and left open.
        self._owns_client = control_plane is None
        self.acp = control_plane or AsyncControlPlane(
            endpoints, timeout=timeout, retry_budget=retry_budget
        )
        self.root = root
        self._configs: dict[str, TopicConfig] = {}
        self._batcher = Batcher(self.acp)

    async def close(self) -> None:
        if self._owns_client:
            await self.acp.aclose()

    def layout(self, topic: str) -> Layout:
        return Layout(check_topic(topic), self.root)

    # -- topics -------------------------------------------------------------------------

    async def topic_config(self, topic: str, create: bool = True) -> TopicConfig:
        """The topic's settings; created with the defaults when missing and `create`."""
        cached = self._configs.get(topic)
        if cached is not None:
            return cached
        layout = self.layout(topic)
        with translated():
            kv = await self.acp.get(layout.config_key)
        if kv is not None:
            config = _config_of(kv)
        elif create:
            config = await self.create_topic(topic, TopicConfig())
        else:
            raise InvalidEvent(f"topic {topic!r} does not exist")
        self._configs[topic] = config
        return config

    async def create_topic(self, topic: str, config: TopicConfig) -> TopicConfig:
        """Create `topic` with `config`, or change an existing topic's settings (all but
        `partitions`, which is fixed at creation: a different count is refused)."""
        layout = self.layout(topic)
        value = _dumps(config.to_json())
        with translated():
            answer = await self.acp.txn(
                [{"key": layout.config_key, "target": "version", "op": "=", "value": 0}],
                [{"put": {"key": layout.config_key, "value": value}}],
                [{"get": {"key": layout.config_key}}],
            )
        if not answer["succeeded"]:
            existing = _config_of(KeyValue.from_json(answer["responses"][0]["get"]["kvs"][0]))
            check_partitions_kept(topic, existing, config)
            if existing != config:
                with translated():
                    await self.acp.put(layout.config_key, value)
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
        layout = self.layout(topic)
        body, key, fields, message_id = check_publish(payload, key, headers, id)
        message_id = message_id or new_id()
        config = await self.topic_config(topic)
        partition = partition_for(key, message_id, config.partitions)
        now = time.time()
        key_name = layout.message_key(partition, message_id)
        with translated():
            if id is None:  # a fresh random id: nothing to compare, batched with others
                offset = await self._batcher.put(
                    key_name, lambda index: encode_record(message_id, body, key, fields, now, index)
                )
                previous = None
            else:
                record = encode_record(message_id, body, key, fields, now)
                offset, previous = await self._put_absent(layout, key_name, record)
        metrics.PUBLISHED.labels(topic).inc()
        if previous is not None:
            return Published(
                topic=topic, partition=partition, offset=previous, id=message_id, duplicate=True
            )
        return Published(topic=topic, partition=partition, offset=offset, id=message_id)

    async def _put_absent(self, layout: Layout, key: str, record: str) -> tuple[int, int | None]:
        """Put `key` unless it exists (a repeat keeps the first body); (the offset of the
        new message, None) or (0, the offset of the existing one)."""
        answer = await self.acp.txn(
            [{"key": key, "target": "version", "op": "=", "value": 0}],
            [{"put": {"key": key, "value": record}}],
            [{"get": {"key": key}}],
        )
        if answer["succeeded"]:
            return offset_for(int(answer["revision"])), None
        kvs = [KeyValue.from_json(kv) for kv in answer["responses"][0]["get"]["kvs"]]
        existing = message_of(layout, kvs[0]) if kvs else None
        return 0, existing.offset if existing is not None else offset_for(kvs[0].create_revision)

    # -- reading ------------------------------------------------------------------------

    async def partition_messages(
        self, layout: Layout, config: TopicConfig, partition: int, from_offset: int = 0
    ) -> list[Message]:
        """Every retained message of `partition` at or above `from_offset`, by offset."""
        out: list[Message] = []
        with translated():
            async for kv in self.acp.iter_keys(layout.partition_prefix(partition)):
                message = message_of(layout, kv)
                if message is not None and message.offset >= from_offset:
                    out.append(message)
        out.sort(key=lambda m: m.offset)
        return out

    async def read(self, topic: str, from_offset: int = 0, limit: int = 100) -> list[Message]:
        """Up to `limit` retained messages at or above `from_offset`, in offset order."""
        layout, config = self.layout(topic), await self.topic_config(topic, create=False)
        found: list[Message] = []
        for p in range(config.partitions):
            found += await self.partition_messages(layout, config, p, from_offset)
        found.sort(key=lambda m: m.offset)
        return found[:limit]

    # -- groups -------------------------------------------------------------------------

    async def _group_keys(self, layout: Layout, group: str) -> tuple[KeyValue, list[KeyValue]]:
        with translated():
            meta = await self.acp.get(layout.group_key(check_group(group)))
            if meta is None:
                raise UnknownGroup(f"topic {layout.topic!r} has no group {group!r}")
            keys = [kv async for kv in self.acp.iter_keys(layout.group_prefix(group))]
        return meta, keys

    async def group_names(self, topic: str) -> list[str]:
        layout = self.layout(topic)
        with translated():
            kvs = [kv async for kv in self.acp.iter_keys(layout.groups_prefix)]
        return sorted(kv.key[len(layout.groups_prefix) :] for kv in kvs)

    async def groups(self, topic: str) -> list[GroupInfo]:
        layout = self.layout(topic)
        out = []
        for name in await self.group_names(topic):
            _, keys = await self._group_keys(layout, name)
            members, claims, _ = split_group(layout, name, keys)
            out.append(GroupInfo(topic=topic, group=name, members=members, claims=claims))
        return out

    async def lag(self, topic: str, group: str) -> GroupLag:
        layout = self.layout(topic)
        config = await self.topic_config(topic, create=False)
        meta, keys = await self._group_keys(layout, group)
        _, claims, offsets = split_group(layout, group, keys)
        start = group_start(meta)
        rows = []
        for p in range(config.partitions):
            committed = offsets.get(p, start)
            pending = len(await self.partition_messages(layout, config, p, committed))
            rows.append(
                PartitionLag(partition=p, committed=committed, pending=pending, owner=claims.get(p))
            )
        return GroupLag(topic=topic, group=group, partitions=tuple(rows))

    async def replay(
        self, topic: str, group: str, *, offset: int | None = None, at: float | None = None
    ) -> dict[int, int]:
        """Move `group` back (or forward) to `offset`, or to the first message published
        at or after the time `at` (seconds since the epoch), in every partition. Its
        consumers drop what they hold and resume from there. The new offsets."""
        if (offset is None) == (at is None):
            raise InvalidEvent("give exactly one of offset= or at=")
        if offset is not None and offset < 0:
            raise InvalidEvent(f"offset must be >= 0, got {offset}")
        layout = self.layout(topic)
        config = await self.topic_config(topic, create=False)
        await self._group_keys(layout, group)
        targets: dict[int, int] = {}
        for p in range(config.partitions):
            if offset is not None:
                targets[p] = offset
                continue
            assert at is not None
            messages = await self.partition_messages(layout, config, p)
            later = [m.offset for m in messages if m.timestamp >= at]
            targets[p] = later[0] if later else (messages[-1].offset + 1 if messages else 0)
        ops: list[dict[str, Any]] = []
        for p, target in targets.items():
            ops.append({"put": {"key": layout.offset_key(group, p), "value": str(target)}})
            ops.append({"delete": {"key": layout.claim_key(group, p)}})
        with translated():
            await self.acp.txn([], ops)
        return targets

    async def trim(
        self, topic: str, now: float | None = None, partitions: Sequence[int] | None = None
    ) -> int:
        """Apply the topic's retention (age, then size per partition) to `partitions`
        (default: all); how many messages were deleted. Consumers run it for the
        partitions they own every `RETENTION_INTERVAL`."""
        layout = self.layout(topic)
        config = await self.topic_config(topic, create=False)
        now = time.time() if now is None else now
        deleted = 0
        for p in range(config.partitions) if partitions is None else partitions:
            doomed: list[str] = []
            sizes: list[tuple[int, str, int]] = []  # (offset, key, bytes)
            with translated():
                async for kv in self.acp.iter_keys(layout.partition_prefix(p)):
                    message = message_of(layout, kv)
                    if message is None:
                        continue
                    if message.timestamp < now - config.retention_seconds:
                        doomed.append(kv.key)
                    else:
                        sizes.append((message.offset, kv.key, len(kv.value)))
            if config.retention_bytes is not None:
                total = sum(size for _, _, size in sizes)
                for _, key_, size in sorted(sizes):  # the oldest go first
                    if total <= config.retention_bytes:
                        break
                    doomed.append(key_)
                    total -= size
            for i in range(0, len(doomed), 128):
                chunk = doomed[i : i + 128]
                with translated():
                    await self.acp.txn([], [{"delete": {"key": k}} for k in chunk])
                deleted += len(chunk)
        return deleted

    # -- consuming ----------------------------------------------------------------------

    async def consumer(
        self, topic: str, handler: Handler, group: str | None, options: SubscribeOptions
    ) -> Consumer:
        layout = self.layout(topic)
        if group is not None:
            check_group(group)
        config = await self.topic_config(topic)
        return Consumer(self, layout, config, group, handler, options)


# -- helpers ------------------------------------------------------------------------------


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _config_of(kv: KeyValue) -> TopicConfig:
    try:
        return TopicConfig.from_json(json.loads(kv.value))
    except (ValueError, TypeError) as error:
        raise EventsError(f"topic settings at {kv.key} are unreadable: {error}") from None
