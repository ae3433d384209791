"""The part of a consumer every backend shares: one task that owns the delivery state
machine, the handlers, dead letters, the reconciliation of claims, starting over.

Theory of operation. `_main` is the only task that touches the state machine
(`delivery.GroupDelivery`); everything else -- watches or polls, claims, releases,
handlers -- posts items to its inbox. A backend's consumer (`consumer.Consumer` on the
control plane, `redis_backend.RedisConsumer`) implements one run (`_run_once`: join, then
feed the inbox until `_main` returns) and the claim protocol (`_claim`, `_adopt`,
`_release`, `_leave`); the view of members and claims it keeps in `self._view` drives
`assignment.plan` after each change (`_reconcile`).

Anything unexpected (`Rejoin`, a backend error) ends the run; the consumer starts over
with a fresh state machine and a new member id, so what was in flight is redelivered from
what the group committed, never lost. Items and handler answers from an earlier run are
dropped by their generation number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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
from .model import Message, TopicConfig
from .types import SubscribeOptions

__all__ = ["ConsumerShell", "Rejoin", "Stopped", "View", "end_if_cancelled", "every"]

log = logging.getLogger("shoal.events.consumer")

RETRY_MIN, RETRY_MAX = 0.05, 2.0
SETTLE_TIMEOUT = 5.0  # a view that never shows our own claim write: judge it anyway


def end_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled, even if a library swallowed it.

    Every turn of a consumer's side loops calls it (`every` does). Seen under load: a
    Redis consumer's poll loop cancelled in the middle of a pipeline went on polling (its
    task `cancelling`, the CancelledError lost inside redis-py), so the consumer's
    TaskGroup -- and with it `stop()`, or a restart after `Rejoin` -- waited forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def every(seconds: float, step: Callable[[], Awaitable[object]]) -> None:
    """Await `step()` every `seconds` until cancelled: a consumer's heartbeats, polls and
    commits. A cancel ends it even if `step`'s library swallowed it (`end_if_cancelled`)."""
    while True:
        end_if_cancelled()
        await asyncio.sleep(seconds)
        await step()


class Rejoin(Exception):
    """Start this consumer over from its join."""


class Stopped(Exception):
    pass


@dataclass(slots=True)
class View:
    """What the consumer knows of its group: live members and partition -> claimer."""

    members: set[str] = field(default_factory=set)
    claims: dict[int, str] = field(default_factory=dict)


class ConsumerShell:
    """One member of `group` (or a plain subscriber when `group` is None) of `topic`."""

    transient_errors: tuple[type[BaseException], ...] = (EventsError,)

    def __init__(
        self,
        topic: str,
        config: TopicConfig,
        group: str | None,
        handler: Handler,
        options: SubscribeOptions,
        publish_dead_letter: Any,
    ) -> None:
        self.topic, self.config, self.group = topic, config, group
        self.handler, self.options = handler, options
        self.label = group or ""
        self.member_id = secrets.token_hex(6)
        self._publish_dead_letter = publish_dead_letter
        self._async_handler = is_async(handler)
        self._pool: ThreadPoolExecutor | None = None
        if not self._async_handler:
            self._pool = ThreadPoolExecutor(options.max_in_flight, thread_name_prefix="shoal-ev")
        self.machine = GroupDelivery(topic, config, max_in_flight=options.max_in_flight)
        self.generation = 0
        self.joined = asyncio.Event()
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._busy: set[int] = set()
        # Partitions whose claim we just took or gave up, with the holder the view must
        # show before plan() may judge them again (the view lags our own writes).
        self._settling: dict[int, tuple[str | None, float]] = {}
        self._view = View()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._released = asyncio.Event()
        self._resume_at: int | None = None
        self.last_error: BaseException | None = None

    # -- what a backend implements ------------------------------------------------------

    async def _run_once(self) -> None:
        raise NotImplementedError

    async def _claim(self, partition: int, generation: int) -> None:
        """Take free `partition` for this member; post ("assigned", p, committed) and
        ("loaded", p, messages), or ("unbusy", p) when it was not ours to take."""
        raise NotImplementedError

    async def _adopt(self, partition: int, generation: int) -> None:
        """`partition` is claimed by this member already: load it as `_claim` does."""
        raise NotImplementedError

    async def _release(self, partition: int, committed: int, generation: int) -> None:
        """Hand `partition` back (commit `committed` with it); then post ("unbusy", p)."""
        raise NotImplementedError

    async def _leave(self) -> None:
        """Leave the group for good (drop the lease), best effort."""

    def _partitions_moved(self) -> None:
        """After every reconcile: the partitions owned or being taken (`_busy`) may have
        changed. A backend that receives only some partitions' messages must cover a
        partition it is taking before listing it."""

    def _done(self, partition: int, offset: int) -> None:
        """A message is finished (handled or dead-lettered): a backend may ack it."""

    def _on_reset(self) -> None:
        """The run ended: drop per-run bookkeeping."""

    def _apply_group_event(self, event: Any) -> None:
        """A change of the group's keys posted as ("group", event): update `self._view`."""

    def _on_assigned(self, partition: int, committed: int) -> None:
        """`partition` is ours from `committed` on."""

    def _on_lost(self, partition: int) -> None:
        """`partition` is no longer ours."""

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
                except* Stopped:
                    self._stopping = True
                except* Exception as group:  # Rejoin, a backend's error: start over
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

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Hand every partition back once its in-flight messages finish (up to
        `drain_timeout`, default the options'), commit, and leave the group (revoking
        the lease)."""
        self._stopping = True
        wait = self.options.drain_timeout if drain_timeout is None else drain_timeout
        if self.group is not None and self.joined.is_set():
            self._inbox.put_nowait(("drain",))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), wait)
        self._inbox.put_nowait(("stop",))

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
        self._settling.clear()
        self._on_reset()
        self._inbox = asyncio.Queue()
        self.joined.clear()
        self.member_id = secrets.token_hex(6)

    async def _cleanup(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._leave()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _main(self) -> None:
        inbox = self._inbox
        while True:
            wakeup = self._next_wakeup()
            timeout = None if wakeup is None else max(0.0, wakeup - time.monotonic())
            try:
                item = await asyncio.wait_for(inbox.get(), timeout)
            except TimeoutError:
                self._feed(Tick())
                if self._settling:
                    self._reconcile()  # a settle that timed out: judge it now
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
                if isinstance(stimulus, Acked) and self.machine.owns(stimulus.partition):
                    self._done(stimulus.partition, stimulus.offset)
                self._feed(stimulus)
        elif kind == "group":
            self._apply_group_event(item[1])
            self._reconcile()
        elif kind == "view":
            self._view = item[1]
            self._reconcile()
        elif kind == "assigned":
            _, partition, committed = item
            self._busy.discard(partition)
            self._settle(partition, self.member_id)  # nor call it lost before it shows
            self._on_assigned(partition, committed)
            self._feed(Assigned(partition, committed))
            # The watch may have shown the claim (and a newcomer) before this answer:
            # nothing else would run the plan again for this partition.
            self._reconcile()
        elif kind == "loaded":
            self._feed(Loaded(item[1], item[2]))
        elif kind == "handed-back":
            # Until the view shows the claim gone, a stale view must not make us adopt it.
            self._busy.discard(item[1])
            self._settle(item[1], None)
            self._reconcile()
        elif kind == "unbusy":
            self._busy.discard(item[1])
            self._reconcile()
        elif kind == "drain":
            for p in sorted(self.machine.partitions):
                self._feed(Revoke(p))
            self._check_released()
        elif kind == "rejoin":
            raise Rejoin(item[1])

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

    def _reconcile(self) -> None:
        if self.group is None or self._stopping:
            return
        now = time.monotonic()
        for p, (holder, since) in list(self._settling.items()):
            if self._view.claims.get(p) == holder or now - since >= SETTLE_TIMEOUT:
                del self._settling[p]
        draining = {s.partition for s in self.machine.stats() if s.draining}
        moves = plan(
            self.member_id,
            self._view.members,
            self._view.claims,
            self.machine.partitions,
            self.config.partitions,
            draining,
            self._busy | self._settling.keys(),
        )
        for p in moves.lost:
            self._feed(Lost(p))
            self._on_lost(p)
        for p in moves.revoke:
            self._feed(Revoke(p))
        for p in moves.claim:
            self._busy.add(p)
            self._spawn(self._claim(p, self.generation))
        for p in moves.adopt:
            self._busy.add(p)
            self._spawn(self._adopt(p, self.generation))
        self._partitions_moved()
        self._update_lag()

    def _next_wakeup(self) -> float | None:
        """The state machine's next deadline, or a settling partition's timeout."""
        wakeups = [since + SETTLE_TIMEOUT for _, since in self._settling.values()]
        machine = self.machine.next_wakeup()
        if machine is not None:
            wakeups.append(machine)
        return min(wakeups, default=None)

    def _settle(self, partition: int, holder: str | None) -> None:
        self._settling[partition] = (holder, time.monotonic())

    def _check_released(self) -> None:
        if self._stopping and not self.machine.partitions:
            self._released.set()

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
            await self._publish_dead_letter(
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
