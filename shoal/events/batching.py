"""Natural batching of publishes: what arrives while a write is on its way goes out
together in the next one, as one transaction.

Theory of operation. At most one write per backend is in flight. The first publish goes
out alone at once (a lone producer waits for nothing), as a plain `PUT` -- the node's
fast path. Publishes that arrive meanwhile queue; when the write returns, up to 128 of
them (and at most `MAX_BATCH_BYTES`) go as one transaction of puts, which lands in one
revision: message i of it gets offset `offset_for(revision, i)`, its index written in
its record. So eight producers pay for one HTTP request and one Raft entry per round
instead of eight, on top of the node's own group commit of concurrent requests.

An error fails every publish of that write; none of them is retried here (a batch
transaction may have been applied: the caller decides, and retries with an id to be safe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from shoal.client import AsyncControlPlane

from .model import OFFSET_SLOTS, offset_for

__all__ = ["MAX_BATCH_BYTES", "Batcher"]

MAX_BATCH_BYTES = 1024 * 1024  # the HTTP body limit is 2 MiB; JSON quoting adds some


@dataclass(slots=True)
class _Pending:
    key: str
    record: Callable[[int], str]  # the stored record, given its index in the batch
    done: asyncio.Future[int]


class Batcher:
    def __init__(self, acp: AsyncControlPlane) -> None:
        self.acp = acp
        self._waiting: list[_Pending] = []
        self._sending = False
        self._drainer: asyncio.Future[None] | None = None
        self.batches = 0  # writes sent, for the benchmark's "messages per write"
        self.messages = 0

    async def put(self, key: str, record: Callable[[int], str]) -> int:
        """Write one new message key; its offset once the write is committed."""
        pending = _Pending(key, record, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        if not self._sending:
            self._sending = True
            self._drainer = asyncio.ensure_future(self._drain())
        return await pending.done

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._waiting and len(batch) < OFFSET_SLOTS:
            size += len(self._waiting[0].record(len(batch))) + len(self._waiting[0].key) + 64
            if batch and size > MAX_BATCH_BYTES:
                break
            batch.append(self._waiting.pop(0))
        return batch

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                try:
                    offsets = await self._write(batch)
                except BaseException as error:  # every publish of it hears why
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for item, offset in zip(batch, offsets, strict=True):
                    if not item.done.done():
                        item.done.set_result(offset)
        finally:
            self._sending = False

    async def _write(self, batch: list[_Pending]) -> list[int]:
        self.batches += 1
        self.messages += len(batch)
        if len(batch) == 1:
            revision = await self.acp.put(batch[0].key, batch[0].record(0))
            return [offset_for(revision)]
        puts = [{"put": {"key": p.key, "value": p.record(i)}} for i, p in enumerate(batch)]
        answer = await self.acp.txn([], puts, [])
        revision = int(answer["revision"])
        return [offset_for(revision, i) for i in range(len(batch))]
