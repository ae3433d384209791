"""The delivery state machine of one consumer: offsets, in-flight, redelivery, key locks.

Theory of operation. A consumer owns some partitions of a topic for its group. For each
it knows the group's committed offset (every message below it is done) and the messages
at or above it that are not done yet, in offset order. `handle(stimulus, now)` is the
one entry point; it answers instructions for the I/O shell to carry out:

    Assigned(p, committed)   the group's claim on p is ours; messages come next
    Loaded(p, messages)      what p holds (any order; repeats are ignored); p is ready
    Arrived(messages)        new messages (from the watch); ignored for partitions not ours
    Acked(p, offset)         the handler returned (or a dead letter was written)
    Failed(p, offset, ...)   the handler raised or nacked, optionally with a delay
    Revoke(p)                hand p back: nothing new is delivered; Released once idle
    Lost(p)                  p is no longer ours (our lease died): forget it at once
    Tick()                   time passed (redelivery deadlines)

    -> Deliver(message, attempt) | DeadLetter(message, attempts, reason) | Released(p, offset)

The rules it keeps (tests/events/test_delivery_properties.py checks each against a
simple model with Hypothesis):

1. Per-key order: a message is handed out only when every earlier message of its key
   (in its partition, which holds all of that key) is done, and a key is held by at most
   one message at a time -- from its first delivery until it is acked or dead-lettered,
   through every nack delay. Messages without a key hold no lock.
2. At most `max_in_flight` deliveries (and dead letters) are out at once.
3. A failed delivery is redelivered no earlier than its delay; after `max_attempts`
   failed deliveries it becomes a `DeadLetter` instead (the shell writes it, then Acks).
4. `watermarks()` is, per partition, the lowest offset not done (or one past the highest
   seen): committing it never skips an unfinished message, so a successor that resumes
   there redelivers exactly the messages that were not done here.
5. Stale answers (an Ack for a partition since lost, a second Ack) change nothing.
6. A draining partition is Released exactly once, when nothing of it is in flight, with
   its watermark.

No I/O, no clock (`now` comes in), no randomness.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Union

from .model import Message, TopicConfig

__all__ = [
    "Acked",
    "Arrived",
    "Assigned",
    "DeadLetter",
    "Deliver",
    "Failed",
    "GroupDelivery",
    "Instruction",
    "Loaded",
    "Lost",
    "PartitionStats",
    "Released",
    "Revoke",
    "Stimulus",
    "Tick",
]


# -- stimuli ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assigned:
    partition: int
    committed: int


@dataclass(frozen=True, slots=True)
class Loaded:
    partition: int
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Arrived:
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Acked:
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Failed:
    partition: int
    offset: int
    delay: float | None = None  # None: the topic's backoff for this attempt
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Revoke:
    partition: int


@dataclass(frozen=True, slots=True)
class Lost:
    partition: int


@dataclass(frozen=True, slots=True)
class Tick:
    pass


Stimulus = Union[Assigned, Loaded, Arrived, Acked, Failed, Revoke, Lost, Tick]  # noqa: UP007


# -- instructions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    message: Message  # `message.attempt` says which delivery this is


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class Released:
    partition: int
    committed: int


Instruction = Union[Deliver, DeadLetter, Released]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class PartitionStats:
    partition: int
    committed: int
    waiting: int
    in_flight: int
    delayed: int
    loading: bool
    draining: bool


# -- state ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Partition:
    """One owned partition. Which messages may go out is indexed, so a pick costs
    O(log n) however many messages wait behind busy keys: each key's messages queue in
    offset order and only the head of a queue (or a message without a key) is ever in
    `runnable`; the head stays the head -- holding its key -- from its first delivery
    until it is done. `runnable` and `timers` are heaps checked lazily: a popped entry
    that no longer qualifies is dropped (it is pushed again when it qualifies again)."""

    committed: int
    high: int  # the highest offset seen (committed - 1 before any)
    loading: bool = True
    draining: bool = False
    order: list[int] = field(default_factory=list)  # offsets not done, ascending
    messages: dict[int, Message] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    delayed: dict[int, float] = field(default_factory=dict)  # offset -> not before
    attempts: dict[int, int] = field(default_factory=dict)  # deliveries so far
    dead: dict[int, str] = field(default_factory=dict)  # offset -> reason, being dead-lettered
    queues: dict[str, deque[int]] = field(default_factory=dict)  # key -> its offsets
    runnable: list[int] = field(default_factory=list)  # heap of offsets that may go
    timers: list[tuple[float, int]] = field(default_factory=list)  # heap of (due, offset)

    def add(self, message: Message) -> bool:
        offset = message.offset
        if offset < self.committed or offset in self.messages:
            return False
        if not self.loading and offset <= self.high:
            return False  # seen (and maybe done) already: a rewrite of a retried publish
        if offset > self.high:
            self.high = offset
            self.order.append(offset)
        else:
            bisect.insort(self.order, offset)
        self.messages[offset] = message
        if not self.loading:
            self._index(offset)
        return True

    def loaded(self) -> None:
        """Index everything gathered while loading (it may have come in any order)."""
        self.loading = False
        for offset in self.order:
            self._index(offset)

    def _index(self, offset: int) -> None:
        key = self.messages[offset].key
        if key is None:
            heapq.heappush(self.runnable, offset)
            return
        queue = self.queues.get(key)
        if queue is None:
            self.queues[key] = deque((offset,))
            heapq.heappush(self.runnable, offset)
        else:
            queue.append(offset)

    def done(self, offset: int) -> None:
        message = self.messages.pop(offset)
        del self.order[bisect.bisect_left(self.order, offset)]
        self.in_flight.discard(offset)
        self.delayed.pop(offset, None)
        self.attempts.pop(offset, None)
        self.dead.pop(offset, None)
        if message.key is not None:
            queue = self.queues[message.key]
            queue.popleft()  # it was the head: only heads go out
            if queue:
                heapq.heappush(self.runnable, queue[0])
            else:
                del self.queues[message.key]

    def delay(self, offset: int, until: float) -> None:
        self.delayed[offset] = until
        heapq.heappush(self.timers, (until, offset))

    def watermark(self) -> int:
        return self.order[0] if self.order else self.high + 1

    def next_ready(self, now: float) -> int | None:
        """The lowest offset that may go out now: not out already, due, and first of
        its key among those not done."""
        while self.timers and self.timers[0][0] <= now:
            _, offset = heapq.heappop(self.timers)
            if offset in self.messages and offset not in self.in_flight:
                heapq.heappush(self.runnable, offset)
        while self.runnable:
            offset = heapq.heappop(self.runnable)
            if offset not in self.messages or offset in self.in_flight:
                continue
            due = self.delayed.get(offset)
            if due is not None and due > now:
                continue  # its timer brings it back
            return offset
        return None


class GroupDelivery:
    """One consumer's delivery state for one topic (all partitions it owns)."""

    def __init__(self, topic: str, config: TopicConfig, *, max_in_flight: int = 16) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.topic, self.config, self.max_in_flight = topic, config, max_in_flight
        self._partitions: dict[int, _Partition] = {}
        self._rotation: deque[int] = deque()  # fairness between partitions
        self._out = 0  # deliveries and dead letters in flight, all partitions

    # -- the entry point ----------------------------------------------------------------

    def handle(self, stimulus: Stimulus, now: float) -> list[Instruction]:
        out: list[Instruction] = []
        match stimulus:
            case Assigned(partition, committed):
                self._assign(partition, committed, out)
            case Loaded(partition, messages):
                part = self._partitions.get(partition)
                if part is not None and part.loading:
                    for message in messages:
                        if message.partition == partition:
                            part.add(message)
                    part.loaded()
                elif part is not None:
                    for message in messages:
                        if message.partition == partition:
                            part.add(message)
            case Arrived(messages):
                for message in messages:
                    part = self._partitions.get(message.partition)
                    if part is not None:
                        part.add(message)
            case Acked(partition, offset):
                part = self._partitions.get(partition)
                if part is not None and offset in part.in_flight:
                    part.done(offset)
                    self._out -= 1
                    self._maybe_release(partition, part, out)
            case Failed(partition, offset, delay, reason):
                self._fail(partition, offset, delay, reason, now)
            case Revoke(partition):
                part = self._partitions.get(partition)
                if part is not None:
                    part.draining = True
                    self._maybe_release(partition, part, out)
            case Lost(partition):
                part = self._partitions.pop(partition, None)
                if part is not None:
                    self._out -= len(part.in_flight)
                    self._rotation.remove(partition)
            case Tick():
                pass
        self._fill(now, out)
        return out

    # -- queries ------------------------------------------------------------------------

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._partitions)

    @property
    def in_flight(self) -> int:
        return self._out

    def owns(self, partition: int) -> bool:
        return partition in self._partitions

    def watermarks(self) -> dict[int, int]:
        """Per owned partition, the offset to commit: the lowest one not done."""
        return {p: part.watermark() for p, part in self._partitions.items()}

    def next_wakeup(self) -> float | None:
        """When the earliest delayed redelivery falls due (None: none is waiting)."""
        times = [t for part in self._partitions.values() for t in part.delayed.values()]
        return min(times) if times else None

    def stats(self) -> list[PartitionStats]:
        return [
            PartitionStats(
                partition=p,
                committed=part.watermark(),
                waiting=len(part.order) - len(part.in_flight),
                in_flight=len(part.in_flight),
                delayed=len(part.delayed),
                loading=part.loading,
                draining=part.draining,
            )
            for p, part in sorted(self._partitions.items())
        ]

    # -- transitions --------------------------------------------------------------------

    def _assign(self, partition: int, committed: int, out: list[Instruction]) -> None:
        if partition in self._partitions:
            return  # already ours: the shell saw its own claim again
        self._partitions[partition] = _Partition(committed=committed, high=committed - 1)
        self._rotation.append(partition)

    def _fail(
        self, partition: int, offset: int, delay: float | None, reason: str, now: float
    ) -> None:
        part = self._partitions.get(partition)
        if part is None or offset not in part.in_flight:
            return
        part.in_flight.discard(offset)
        self._out -= 1
        attempts = part.attempts.get(offset, 1)
        if offset in part.dead:  # a dead letter that could not be written: again, later
            wait = delay if delay is not None else self.config.backoff(1)
        elif attempts >= self.config.max_attempts:
            part.dead[offset] = reason or "failed"  # out next as a DeadLetter, key still held
            wait = 0.0
        else:
            wait = delay if delay is not None else self.config.backoff(attempts)
        part.delay(offset, now + max(0.0, wait))

    def _maybe_release(self, partition: int, part: _Partition, out: list[Instruction]) -> None:
        if part.draining and not part.in_flight:
            out.append(Released(partition, part.watermark()))
            del self._partitions[partition]
            self._rotation.remove(partition)

    def _fill(self, now: float, out: list[Instruction]) -> None:
        idle = 0
        while self._out < self.max_in_flight and self._rotation and idle < len(self._rotation):
            partition = self._rotation[0]
            self._rotation.rotate(-1)
            part = self._partitions[partition]
            offset = None if part.loading or part.draining else part.next_ready(now)
            if offset is None:
                idle += 1
                continue
            idle = 0
            self._out += 1
            part.in_flight.add(offset)
            part.delayed.pop(offset, None)
            message = part.messages[offset]
            if offset in part.dead:
                attempts = part.attempts.get(offset, 1)
                out.append(
                    DeadLetter(_with_attempt(message, attempts), attempts, part.dead[offset])
                )
                continue
            attempt = part.attempts.get(offset, 0) + 1
            part.attempts[offset] = attempt
            out.append(Deliver(_with_attempt(message, attempt)))


def _with_attempt(message: Message, attempt: int) -> Message:
    if message.attempt == attempt:
        return message
    return Message(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        id=message.id,
        payload=message.payload,
        key=message.key,
        headers=message.headers,
        timestamp=message.timestamp,
        attempt=attempt,
    )
