"""Natural batching of publishes: what arrives while a write is on its way goes out
together in the next one, as one transaction.

Theory of operation. At most one write per backend is in flight. The first publish goes
out alone at once from the publisher's own task (a lone producer waits for nothing and
pays for no extra task), as a plain `PUT` -- the node's fast path. Publishes that arrive
meanwhile queue; when the write returns, up to 128 of them (and at most
`MAX_BATCH_BYTES`) go as one transaction of puts, from a drainer task, which lands in one
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
        if not self._sending:  # nothing in flight: this one goes out alone, from this task
            self._sending = True
            try:
                return await self._write_one(key, record(0))
            finally:  # what queued meanwhile goes next, in the drainer's task
                if self._waiting:
                    self._drainer = asyncio.ensure_future(self._drain())
                else:
                    self._sending = False
        pending = _Pending(key, record, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        return await pending.done

    def _take(self) -> list[tuple[_Pending, str]]:
        """The next batch, each with its record (encoded once: the size needs it)."""
        batch: list[tuple[_Pending, str]] = []
        size = 0
        waiting = self._waiting
        while waiting and len(batch) < OFFSET_SLOTS:
            text = waiting[0].record(len(batch))
            size += len(text) + len(waiting[0].key) + 64
            if batch and size > MAX_BATCH_BYTES:
                break
            batch.append((waiting.pop(0), text))
        return batch

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                try:
                    offsets = await self._write(batch)
                except BaseException as error:  # every publish of it hears why
                    for item, _ in batch:
                        if not item.done.done():
                            item.done.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for (item, _), offset in zip(batch, offsets, strict=True):
                    if not item.done.done():
                        item.done.set_result(offset)
        finally:
            self._sending = False

    async def _write_one(self, key: str, record: str) -> int:
        self.batches += 1
        self.messages += 1
        return offset_for(await self.acp.put(key, record))

    async def _write(self, batch: list[tuple[_Pending, str]]) -> list[int]:
        if len(batch) == 1:
            return [await self._write_one(batch[0][0].key, batch[0][1])]
        self.batches += 1
        self.messages += len(batch)
        puts = [{"put": {"key": p.key, "value": text}} for p, text in batch]
        answer = await self.acp.txn([], puts, [])
        revision = int(answer["revision"])
        return [offset_for(revision, i) for i in range(len(batch))]
