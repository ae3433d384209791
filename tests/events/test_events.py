"""shoal.events against real servers, each test on both backends: a one-member control
plane and a redis-server (appendfsync always), started by the fixtures.

Subscribers run in this process here (tests/events/test_failover.py kills real consumer
processes). Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

from shoal.events import (
    MAX_PAYLOAD_BYTES,
    Events,
    InvalidEvent,
    InvalidName,
    Message,
    Nack,
    PayloadTooLarge,
    TopicConfig,
    UnknownGroup,
)
from shoal.events.builtin import BuiltinBackend
from shoal.testing import ServerProcess, wait_for


@pytest.fixture
def bus(url: str) -> Iterator[Events]:
    with Events(url) as events:
        yield events


class Collector:
    """A handler that records what it was given, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        with self.lock:
            self.messages.append(message)

    def ids(self) -> list[str]:
        with self.lock:
            return [m.id for m in self.messages]


def test_every_group_gets_every_message_and_each_once_per_group(bus: Events) -> None:
    bus.create_topic("orders", TopicConfig(partitions=4))
    billing = [Collector(), Collector()]
    audit = Collector()
    subs = [bus.subscribe("orders", c, group="billing") for c in billing]
    subs.append(bus.subscribe("orders", audit, group="audit"))

    def shared() -> bool:
        return sum(len(s.partitions) for s in subs[:2]) == 4 and all(s.partitions for s in subs[:2])

    wait_for(shared, 15, what="billing's two members to share the partitions")
    sent = [bus.publish("orders", f"order {i}", key=f"customer-{i % 7}").id for i in range(60)]
    wait_for(lambda: len(billing[0].ids()) + len(billing[1].ids()) >= 60, 20, what="billing")
    wait_for(lambda: len(audit.ids()) >= 60, 20, what="audit")
    time.sleep(0.2)  # not a wait for a condition: a window for wrong extra deliveries
    both = billing[0].ids() + billing[1].ids()
    assert sorted(both) == sorted(sent), "each message to exactly one billing member"
    assert sorted(audit.ids()) == sorted(sent)
    assert billing[0].ids() and billing[1].ids(), "both members of billing took a share"
    for sub in subs:
        sub.stop()


def test_plain_subscribers_each_get_everything(bus: Events) -> None:
    a, b = Collector(), Collector()
    sa, sb = bus.subscribe("news", a), bus.subscribe("news", b)
    sent = [bus.publish("news", f"item {i}").id for i in range(20)]
    wait_for(lambda: len(a.ids()) >= 20 and len(b.ids()) >= 20, 15, what="fan-out")
    assert sorted(a.ids()) == sorted(sent) == sorted(b.ids())
    sa.stop()
    sb.stop()


def test_a_retried_publish_with_the_same_id_is_delivered_once(bus: Events) -> None:
    got = Collector()
    sub = bus.subscribe("payments", got, group="ledger")
    first = bus.publish("payments", "pay 10", id="payment-1")
    again = bus.publish("payments", "pay 10", id="payment-1")
    assert not first.duplicate and again.duplicate
    assert again.offset == first.offset and again.partition == first.partition
    bus.publish("payments", "after", id="payment-2")
    wait_for(lambda: "payment-2" in got.ids(), 15, what="the later message")
    time.sleep(0.2)  # not a wait for a condition: a window for a wrong second delivery
    assert Counter(got.ids())["payment-1"] == 1
    sub.stop()


def test_bad_input_is_refused_and_nothing_is_published(bus: Events) -> None:
    bus.create_topic("strict", TopicConfig(partitions=2))
    with pytest.raises(PayloadTooLarge) as too_big:
        bus.publish("strict", b"x" * (MAX_PAYLOAD_BYTES + 1))
    assert too_big.value.status == 413 and "MAX_PAYLOAD_BYTES" in too_big.value.message
    with pytest.raises(InvalidName, match="message id"):
        bus.publish("strict", "p", id="not an id!")
    with pytest.raises(InvalidName, match="topic"):
        bus.publish("no/slashes", "p")
    with pytest.raises(InvalidName, match="header"):
        bus.publish("strict", "p", headers={"bad header": "v"})
    with pytest.raises(InvalidEvent, match="payload must be bytes or str"):
        bus.publish("strict", {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(UnknownGroup) as unknown:
        bus.lag("strict", "nobody")
    assert unknown.value.status == 404 and unknown.value.to_json()["error"] == "unknown_group"
    with pytest.raises(InvalidEvent, match="fixed at creation"):
        bus.create_topic("strict", TopicConfig(partitions=3))
    assert bus.read("strict") == []


def test_dead_letter_after_max_attempts(bus: Events) -> None:
    bus.create_topic("jobs", TopicConfig(partitions=2, max_attempts=3, retry_delay=0.05))
    calls: Counter[str] = Counter()

    def always_fails(message: Message) -> None:
        calls[message.id] += 1
        raise RuntimeError("cannot do it")

    dead = Collector()
    s1 = bus.subscribe("jobs", always_fails, group="workers")
    s2 = bus.subscribe("jobs.dead", dead, group="operators", start="earliest")
    sent = bus.publish("jobs", "poison", key="k1")
    wait_for(lambda: dead.messages, 20, what="the dead letter")
    letter = dead.messages[0]
    assert letter.text == "poison" and letter.key == "k1"
    assert letter.headers["x-shoal-attempts"] == "3"
    assert letter.headers["x-shoal-offset"] == str(sent.offset)
    assert "cannot do it" in letter.headers["x-shoal-reason"]
    assert calls[sent.id] == 3
    s1.stop()
    s2.stop()


def test_a_nack_with_a_delay_redelivers_no_sooner(bus: Events) -> None:
    seen: list[tuple[int, float]] = []

    def handler(message: Message) -> None:
        seen.append((message.attempt, time.monotonic()))
        if message.attempt == 1:
            raise Nack(delay=0.5)

    sub = bus.subscribe("later", handler, group="g")
    bus.publish("later", "x")
    wait_for(lambda: len(seen) >= 2, 15, what="the redelivery")
    (a1, t1), (a2, t2) = seen[:2]
    assert (a1, a2) == (1, 2) and t2 - t1 >= 0.5
    sub.stop()


def test_per_key_order_with_many_in_flight(bus: Events) -> None:
    bus.create_topic("ticks", TopicConfig(partitions=3))
    order: dict[str, list[int]] = defaultdict(list)
    active: set[str] = set()
    overlap: list[str] = []
    lock = threading.Lock()

    def handler(message: Message) -> None:
        key = message.key or ""
        with lock:
            if key in active:
                overlap.append(key)
            active.add(key)
        time.sleep(0.002 * (int(message.text) % 3))
        with lock:
            active.discard(key)
            order[key].append(int(message.text))

    sub = bus.subscribe("ticks", handler, group="g", max_in_flight=8)
    for i in range(150):
        bus.publish("ticks", str(i), key=f"k{i % 5}")
    wait_for(lambda: sum(len(v) for v in order.values()) >= 150, 30, what="all ticks")
    assert not overlap, "two messages of one key were in handlers at once"
    for key, values in order.items():
        assert values == sorted(values), f"key {key} out of order"
    sub.stop()


def test_replay_a_group_from_an_offset(bus: Events) -> None:
    bus.create_topic("audit", TopicConfig(partitions=2))
    got = Collector()
    sub = bus.subscribe("audit", got, group="g")
    sent = [bus.publish("audit", f"e{i}") for i in range(10)]
    wait_for(lambda: len(got.ids()) >= 10, 15, what="first pass")
    lag = bus.lag("audit", "g")
    wait_for(lambda: bus.lag("audit", "g").total == 0, 10, what="commits")
    assert lag.group == "g"
    from_offset = sorted(p.offset for p in sent)[5]
    bus.replay("audit", "g", offset=from_offset)
    again = {p.id for p in sent if p.offset >= from_offset}
    wait_for(
        lambda: Counter(got.ids()) == Counter([p.id for p in sent] + list(again)), 20, what="replay"
    )
    assert [g.group for g in bus.groups("audit")] == ["g"]
    sub.stop()


def test_retention_by_age_and_size_on_the_builtin_backend(shoal_server: ServerProcess) -> None:
    with Events(shoal_server.url) as bus:
        bus.create_topic(
            "logs", TopicConfig(partitions=1, retention_seconds=60, retention_bytes=400)
        )
        sent = [bus.publish("logs", "x" * 50) for _ in range(10)]
        backend = bus.aio.backend
        assert isinstance(backend, BuiltinBackend)
        deleted = bus._run(backend.trim("logs"))
        kept = bus.read("logs")
        assert deleted == 10 - len(kept) and 0 < len(kept) < 10
        assert [m.offset for m in kept] == sorted(p.offset for p in sent)[-len(kept) :]
        assert bus._run(backend.trim("logs", now=time.time() + 61)) == len(kept)
        assert bus.read("logs") == []


def test_replay_a_group_from_a_time(bus: Events) -> None:
    bus.create_topic("history", TopicConfig(partitions=2))
    got = Collector()
    sub = bus.subscribe("history", got, group="g")
    early = [bus.publish("history", f"early {i}").id for i in range(4)]
    wait_for(lambda: len(got.ids()) >= 4, 15, what="the early messages")
    time.sleep(0.05)  # not a wait for a condition: a gap between the two batches' times
    since = time.time()
    late = [bus.publish("history", f"late {i}").id for i in range(4)]
    wait_for(lambda: len(got.ids()) >= 8, 15, what="the late messages")
    wait_for(lambda: bus.lag("history", "g").total == 0, 10, what="commits")
    bus.replay("history", "g", at=since)
    want = Counter(early + late + late)
    wait_for(lambda: Counter(got.ids()) == want, 20, what="the late messages again")
    sub.stop()


def test_concurrent_publishes_are_batched_and_each_gets_its_own_offset(
    shoal_server: ServerProcess,
) -> None:
    # 16 producers on one backend: while one write is out the others queue and go as one
    # transaction; every message must still land once, at an offset of its own, in order.
    with Events(shoal_server.url) as bus:
        bus.create_topic("orders", TopicConfig(partitions=1))
        backend = bus.aio.backend
        assert isinstance(backend, BuiltinBackend)

        async def produce(n: int) -> list[tuple[int, str]]:
            sent = []
            for i in range(25):
                published = await bus.aio.publish("orders", f"p{n}-{i}", key=f"p{n}")
                sent.append((published.offset, published.id))
            return sent

        async def everyone() -> list[list[tuple[int, str]]]:
            return list(await asyncio.gather(*(produce(n) for n in range(16))))

        per_producer = bus._run(everyone())
        sent = [item for items in per_producer for item in items]
        assert len({offset for offset, _ in sent}) == len(sent) == 400
        for items in per_producer:  # one producer's publishes are acknowledged in order
            assert [offset for offset, _ in items] == sorted(offset for offset, _ in items)
        assert backend._batcher.messages == 400
        assert backend._batcher.batches < 400  # some went together
        stored = bus.read("orders", limit=1000)
        assert [(m.offset, m.id) for m in stored] == sorted(sent)
        assert {m.payload for m in stored} == {
            f"p{n}-{i}".encode() for n in range(16) for i in range(25)
        }
