"""The delivery state machine against a simple model (Hypothesis rule-based testing).

The model knows, per partition, every message published, which are done in the current
assignment, what is out and since when a failed one may go again. After every step the
machine's instructions and watermarks must agree with it (the rules in
shoal/events/delivery.py's docstring, numbered the same).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.events.delivery import (
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
    Tick,
)
from shoal.events.model import Message, TopicConfig

PARTITIONS = 3
MAX_IN_FLIGHT = 3
MAX_ATTEMPTS = 3
KEYS = st.sampled_from(["a", "b", "c", None])


@dataclass
class Epoch:
    """One assignment of a partition to the consumer."""

    start: int
    done: set[int] = field(default_factory=set)
    deliveries: dict[int, int] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)
    not_before: dict[int, float] = field(default_factory=dict)
    draining: bool = False


class DeliveryModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = TopicConfig(partitions=PARTITIONS, max_attempts=MAX_ATTEMPTS, retry_delay=0.5)
        self.machine = GroupDelivery("t", config, max_in_flight=MAX_IN_FLIGHT)
        self.config = config
        self.now = 0.0
        self.next_offset = 10
        self.published: dict[int, list[Message]] = {p: [] for p in range(PARTITIONS)}
        self.committed = dict.fromkeys(range(PARTITIONS), 10)
        self.epochs: dict[int, Epoch] = {}
        self.out: dict[tuple[int, int], Message] = {}  # (p, offset) -> message, in flight
        self.dead_lettered: list[tuple[int, int]] = []

    # -- driving ------------------------------------------------------------------------

    def feed(self, stimulus: object) -> None:
        for instruction in self.machine.handle(stimulus, self.now):  # type: ignore[arg-type]
            self.check(instruction)

    def check(self, instruction: Instruction) -> None:
        if isinstance(instruction, Released):
            epoch = self.epochs.pop(instruction.partition)
            assert epoch.draining
            assert not any(p == instruction.partition for p, _ in self.out)
            assert instruction.committed == self.expected_watermark(instruction.partition, epoch)
            self.committed[instruction.partition] = instruction.committed
            return
        message = instruction.message
        p, offset = message.partition, message.offset
        epoch = self.epochs[p]
        assert not epoch.draining, "nothing new goes out of a draining partition"
        assert offset >= epoch.start and offset not in epoch.done
        assert (p, offset) not in self.out, "a message is out at most once at a time"
        assert self.now >= epoch.not_before.get(offset, 0.0), "rule 3: not before its delay"
        if message.key is not None:
            for q, other in self.out:
                assert self.out[(q, other)].key != message.key, "rule 1: one holder per key"
            for earlier in self.published[p]:
                if earlier.key == message.key and epoch.start <= earlier.offset < offset:
                    assert earlier.offset in epoch.done, "rule 1: earlier of the key first"
        if isinstance(instruction, DeadLetter):
            assert epoch.failures.get(offset, 0) >= MAX_ATTEMPTS, "rule 3: dead only at N"
        else:
            assert isinstance(instruction, Deliver)
            assert epoch.failures.get(offset, 0) < MAX_ATTEMPTS
            epoch.deliveries[offset] = epoch.deliveries.get(offset, 0) + 1
            assert message.attempt == epoch.deliveries[offset]
        self.out[(p, offset)] = message
        assert len(self.out) <= MAX_IN_FLIGHT, "rule 2"

    def expected_watermark(self, p: int, epoch: Epoch) -> int:
        known = [m.offset for m in self.published[p] if m.offset >= epoch.start]
        open_ = [o for o in known if o not in epoch.done]
        if open_:
            return min(open_)
        return max([epoch.start - 1, *known]) + 1

    # -- rules --------------------------------------------------------------------------

    @rule(p=st.integers(0, PARTITIONS - 1), key=KEYS)
    def publish(self, p: int, key: str | None) -> None:
        offset = self.next_offset
        self.next_offset += 1
        key = None if key is None else f"{key}{p}"  # a key hashes to one partition
        message = Message(
            topic="t", partition=p, offset=offset, id=f"m{offset}", payload=b"", key=key
        )
        self.published[p].append(message)
        self.feed(Arrived((message,)))

    @rule(p=st.integers(0, PARTITIONS - 1), seed=st.integers(0, 2**16), early=st.booleans())
    def assign(self, p: int, seed: int, early: bool) -> None:
        if p in self.epochs:
            return
        start = self.committed[p]
        self.epochs[p] = Epoch(start=start)
        self.feed(Assigned(p, start))
        backlog = [m for m in self.published[p] if m.offset >= start]
        random.Random(seed).shuffle(backlog)
        if early and backlog:  # the watch may bring some before the listing does
            self.feed(Arrived((backlog[0],)))
        self.feed(Loaded(p, tuple(backlog)))

    @precondition(lambda self: self.out)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        p, offset = data.draw(st.sampled_from(sorted(self.out)))
        del self.out[(p, offset)]
        self.epochs[p].done.add(offset)
        self.feed(Acked(p, offset))

    @precondition(lambda self: self.out)
    @rule(data=st.data(), delay=st.none() | st.floats(0, 2))
    def fail(self, data: st.DataObject, delay: float | None) -> None:
        p, offset = data.draw(st.sampled_from(sorted(self.out)))
        del self.out[(p, offset)]
        epoch = self.epochs[p]
        failures = epoch.failures.get(offset, 0)
        if failures < MAX_ATTEMPTS:  # a failed delivery (not a failed dead letter)
            failures += 1
            epoch.failures[offset] = failures
            if failures >= MAX_ATTEMPTS:
                wait = 0.0
            else:
                wait = delay if delay is not None else self.config.backoff(failures)
        else:
            wait = delay if delay is not None else self.config.backoff(1)
        epoch.not_before[offset] = self.now + wait
        self.feed(Failed(p, offset, delay, "boom"))

    @rule(dt=st.floats(0, 3))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.feed(Tick())

    @rule(p=st.integers(0, PARTITIONS - 1))
    def revoke(self, p: int) -> None:
        if p in self.epochs and not self.epochs[p].draining:
            self.epochs[p].draining = True
            self.feed(Revoke(p))

    @rule(p=st.integers(0, PARTITIONS - 1))
    def lose(self, p: int) -> None:
        if p in self.epochs:
            del self.epochs[p]
            self.out = {k: v for k, v in self.out.items() if k[0] != p}
            self.feed(Lost(p))
            self.feed(Acked(p, 0))  # rule 5: a stale answer changes nothing

    @rule()
    def commit(self) -> None:
        for p, mark in self.machine.watermarks().items():
            self.committed[p] = mark

    @rule()
    def drain_all(self) -> None:
        """Liveness: acking whatever comes out, with time passing, finishes everything."""
        for _ in range(200):
            if not self.out:
                self.now += self.config.max_retry_delay
                self.feed(Tick())
                if not self.out:
                    break
            for p, offset in sorted(self.out):
                del self.out[(p, offset)]
                self.epochs[p].done.add(offset)
                self.feed(Acked(p, offset))
        for p, epoch in self.epochs.items():
            if not epoch.draining:
                for m in self.published[p]:
                    assert m.offset < epoch.start or m.offset in epoch.done

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def watermarks_match(self) -> None:
        marks = self.machine.watermarks()
        assert set(marks) == set(self.epochs)
        for p, epoch in self.epochs.items():
            assert marks[p] == self.expected_watermark(p, epoch), "rule 4"
        assert self.machine.in_flight == len(self.out)

    @invariant()
    def wakeup_is_a_delay(self) -> None:
        wakeup = self.machine.next_wakeup()
        if wakeup is not None:
            assert (
                any(wakeup == t for e in self.epochs.values() for t in e.not_before.values())
                or wakeup >= 0
            )


TestDelivery = DeliveryModel.TestCase
TestDelivery.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


def test_a_failing_message_is_dead_lettered_after_max_attempts() -> None:
    config = TopicConfig(max_attempts=2, retry_delay=1.0)
    machine = GroupDelivery("t", config, max_in_flight=1)
    m = Message(topic="t", partition=0, offset=5, id="x", payload=b"p", key="k")
    machine.handle(Assigned(0, 5), 0.0)
    (first,) = machine.handle(Loaded(0, (m,)), 0.0)
    assert isinstance(first, Deliver) and first.message.attempt == 1
    assert machine.handle(Failed(0, 5, None, "boom"), 0.0) == []
    assert machine.next_wakeup() == 1.0
    assert machine.handle(Tick(), 0.9) == []
    (second,) = machine.handle(Tick(), 1.0)
    assert isinstance(second, Deliver) and second.message.attempt == 2
    (dead,) = machine.handle(Failed(0, 5, None, "boom again"), 1.0)
    assert dead == DeadLetter(second.message, 2, "boom again")
    assert machine.handle(Acked(0, 5), 1.0) == []
    assert machine.watermarks() == {0: 6}


def test_a_nacked_key_blocks_its_later_messages_but_not_others() -> None:
    machine = GroupDelivery("t", TopicConfig(), max_in_flight=4)
    a1, a2, b1 = (
        Message(topic="t", partition=0, offset=o, id=f"m{o}", payload=b"", key=k)
        for o, k in ((1, "a"), (2, "a"), (3, "b"))
    )
    machine.handle(Assigned(0, 1), 0.0)
    out = machine.handle(Loaded(0, (a2, b1, a1)), 0.0)
    assert [i.message.offset for i in out if isinstance(i, Deliver)] == [1, 3]
    assert machine.handle(Failed(0, 1, 5.0), 0.0) == []
    assert machine.handle(Tick(), 4.0) == []  # a2 waits for a1, which waits for its delay
    (again,) = machine.handle(Tick(), 5.0)
    assert isinstance(again, Deliver) and again.message.offset == 1
    (then,) = machine.handle(Acked(0, 1), 5.0)
    assert isinstance(then, Deliver) and then.message.offset == 2
