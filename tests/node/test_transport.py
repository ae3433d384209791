"""The peer transport over real loopback sockets: delivery in order, batching, reconnect
after a peer is down or restarts, bounded queues, hostile input, membership changes.

Every test is a plain function running one coroutine under a hard timeout; conditions are
polled against a deadline, never waited for with a fixed sleep.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from shoal.node.raft_codec import encode_messages, pack
from shoal.node.transport import Backoff, PeerTransport
from shoal.raft import (
    AppendEntries,
    AppendResponse,
    ConfState,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    Snapshot,
    VoteResponse,
)

HOST = "127.0.0.1"
TEST_TIMEOUT = 10.0

try:
    import uvloop

    LOOPS: list[Callable[[], asyncio.AbstractEventLoop] | None] = [None, uvloop.new_event_loop]
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    LOOPS = [None]


def run(main: Callable[[], Coroutine[Any, Any, None]], loop_factory: Any = None) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(main(), TEST_TIMEOUT)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(bounded())


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


async def keep_sending(send: Callable[[], None], condition: Callable[[], bool]) -> None:
    """Send, poll briefly, repeat: for links that lose messages while reconnecting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        send()
        await asyncio.sleep(0.02)


@contextmanager
def reserved_port() -> Iterator[tuple[socket.socket, int]]:
    """A port bound but not listening: connects to it are refused and nobody takes it."""
    sock = socket.socket()
    try:
        sock.bind((HOST, 0))
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.batches = 0

    def __call__(self, batch: list[Message]) -> None:
        self.messages.extend(batch)
        self.batches += 1

    def of_type(self, cls: type[Message]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, cls)]


def transport(
    member: str,
    peers: dict[str, tuple[str, int]] | None = None,
    inbox: Inbox | None = None,
    port: int = 0,
    unreachable: list[str] | None = None,
    **kwargs: Any,
) -> PeerTransport:
    return PeerTransport(
        member,
        HOST,
        port,
        peers or {},
        on_messages=inbox if inbox is not None else Inbox(),
        on_unreachable=unreachable.append if unreachable is not None else None,
        rng=random.Random(7),
        **kwargs,
    )


async def pair(**kwargs: Any) -> tuple[PeerTransport, Inbox, PeerTransport, Inbox]:
    """Two started transports, a and b, that know each other."""
    inbox_a, inbox_b = Inbox(), Inbox()
    a = transport("a", inbox=inbox_a, **kwargs)
    b = transport("b", inbox=inbox_b, **kwargs)
    await a.start()
    await b.start()
    a.set_peers({"b": (HOST, b.listen_port)})
    b.set_peers({"a": (HOST, a.listen_port)})
    return a, inbox_a, b, inbox_b


def hb(i: int, src: str = "a", dst: str = "b") -> Heartbeat:
    return Heartbeat(src=src, dst=dst, term=1, commit=i)


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def closed_by_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(), 5.0)
    except ConnectionResetError:
        data = b""
    writer.close()
    await writer.wait_closed()
    return data == b""


async def stop_all(*transports: PeerTransport) -> None:
    for t in transports:
        await t.stop()


# -- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize("loop_factory", LOOPS, ids=lambda f: "uvloop" if f else "asyncio")
def test_exchange_of_raft_messages_preserves_order(loop_factory: Any) -> None:
    async def main() -> None:
        a, inbox_a, b, inbox_b = await pair()
        entries = tuple(Entry(term=2, index=i, data=b"x" * i) for i in range(1, 6))
        snapshot = Snapshot(index=9, term=2, conf=ConfState(voters=frozenset("ab")), data=b"s")
        to_b: list[Message] = [
            RequestVote(src="a", dst="b", term=2, last_index=0, last_term=0, pre=True),
            AppendEntries(
                src="a", dst="b", term=2, prev_index=0, prev_term=0, entries=entries, commit=3
            ),
            *(hb(i) for i in range(50)),
            InstallSnapshot(src="a", dst="b", term=2, snapshot=snapshot),
        ]
        a.send(to_b[:2])
        a.send(to_b[2:])
        await eventually(lambda: len(inbox_b.messages) == len(to_b))
        assert inbox_b.messages == to_b

        to_a: list[Message] = [
            VoteResponse(src="b", dst="a", term=2, granted=True),
            AppendResponse(src="b", dst="a", term=2, index=5),
            HeartbeatResponse(src="b", dst="a", term=2, read_seq=4),
        ]
        b.send(to_a)
        await eventually(lambda: len(inbox_a.messages) == len(to_a))
        assert inbox_a.messages == to_a
        assert a.stats.bad_frames == b.stats.bad_frames == 0
        assert a.stats.messages_sent == len(to_b)
        assert a.stats.messages_dropped == 0
        await stop_all(a, b)

    run(main, loop_factory)


def test_a_thousand_sends_in_one_turn_travel_in_a_few_frames() -> None:
    async def main() -> None:
        a, _, b, inbox_b = await pair()
        for i in range(1000):
            a.send([hb(i)])
        await eventually(lambda: len(inbox_b.messages) == 1000)
        assert [m.commit for m in inbox_b.of_type(Heartbeat)] == list(range(1000))
        assert a.stats.messages_sent == 1000
        assert a.stats.frames_sent <= 3
        assert inbox_b.batches == a.stats.frames_sent
        await stop_all(a, b)

    run(main)


def test_a_batch_over_max_frame_bytes_is_split_and_a_message_too_big_is_dropped() -> None:
    async def main() -> None:
        a, _, b, inbox_b = await pair(max_frame_bytes=4096)

        def append(i: int, size: int) -> AppendEntries:
            entry = Entry(term=1, index=i, data=b"d" * size)
            return AppendEntries(
                src="a", dst="b", term=1, prev_index=i - 1, prev_term=1, entries=(entry,), commit=0
            )

        batch = [append(i, 1000) for i in range(1, 21)]  # ~20 KB: at least 5 frames
        a.send([*batch[:10], append(99, 10_000), *batch[10:]])
        await eventually(lambda: len(inbox_b.messages) == 20)
        assert inbox_b.messages == batch
        assert a.stats.frames_sent >= 5
        assert a.stats.messages_dropped == 1
        await stop_all(a, b)

    run(main)


# -- peers that are down, restart, or are unknown ---------------------------------------------


@pytest.mark.parametrize("loop_factory", LOOPS, ids=lambda f: "uvloop" if f else "asyncio")
def test_down_peer_is_reported_and_reached_once_it_starts(loop_factory: Any) -> None:
    async def main() -> None:
        unreachable: list[str] = []
        with reserved_port() as (sock, port):
            a = transport("a", {"b": (HOST, port)}, unreachable=unreachable)
            await a.start()
            a.send([hb(i) for i in range(10)])  # returns at once, raises nothing
            await eventually(lambda: "b" in unreachable)
            await eventually(lambda: a.queued("b") == 0)
            assert a.stats.messages_dropped == 10  # a failed connect drops the stale queue
            assert a.stats.messages_sent == 0
            sock.close()
            inbox_b = Inbox()
            b = transport("b", inbox=inbox_b, port=port)
            await b.start()

        await keep_sending(lambda: a.send([hb(-1)]), lambda: bool(inbox_b.messages))
        assert a.stats.reconnects == 1
        later = [hb(i) for i in range(100, 110)]
        a.send(later)
        await eventually(lambda: inbox_b.messages[-10:] == later)
        await stop_all(a, b)

    run(main, loop_factory)


@pytest.mark.parametrize("loop_factory", LOOPS, ids=lambda f: "uvloop" if f else "asyncio")
def test_traffic_resumes_after_the_peer_restarts_on_the_same_port(loop_factory: Any) -> None:
    async def main() -> None:
        unreachable: list[str] = []
        inbox_b = Inbox()
        b = transport("b", inbox=inbox_b)
        await b.start()
        port = b.listen_port
        a = transport("a", {"b": (HOST, port)}, unreachable=unreachable)
        await a.start()
        a.send([hb(1)])
        await eventually(lambda: len(inbox_b.messages) == 1)

        await b.stop()
        inbox_b2 = Inbox()
        b2 = transport("b", inbox=inbox_b2, port=port)
        await b2.start()
        await keep_sending(lambda: a.send([hb(2)]), lambda: bool(inbox_b2.messages))
        assert unreachable and set(unreachable) == {"b"}
        assert a.stats.reconnects >= 1
        later = [hb(i) for i in range(100, 120)]
        a.send(later)
        await eventually(lambda: inbox_b2.messages[-20:] == later)
        await stop_all(a, b2)

    run(main, loop_factory)


def test_queue_to_a_dead_peer_stays_bounded_and_counts_drops() -> None:
    async def main() -> None:
        with reserved_port() as (_, port):
            a = transport("a", {"b": (HOST, port)}, max_queue=100)
            await a.start()
            a.send(hb(i) for i in range(10_000))
            assert a.queued("b") == 100
            assert a.stats.messages_dropped == 9_900
            await eventually(lambda: a.queued("b") == 0)  # the failed connect clears it
            assert a.stats.messages_dropped == 10_000
            await a.stop()

    run(main)


def test_messages_for_unknown_peers_and_other_members_are_dropped() -> None:
    async def main() -> None:
        a, _, b, inbox_b = await pair()
        a.send([hb(1, dst="nobody"), hb(2)])
        assert a.stats.messages_dropped == 1
        # a raw client delivering a message addressed to someone else: b keeps only its own
        _, writer = await raw_client(b.listen_port)
        writer.write(frame(pack({"member": "c"})))
        writer.write(frame(encode_messages([hb(3, src="c", dst="z"), hb(4, src="c")])))
        await eventually(lambda: len(inbox_b.messages) == 2)
        assert sorted(m.commit for m in inbox_b.of_type(Heartbeat)) == [2, 4]
        writer.close()
        await writer.wait_closed()
        await stop_all(a, b)

    run(main)


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="garbage-hello"),
        pytest.param(frame(pack(["not", "a", "hello"])), id="bad-hello-shape"),
        pytest.param(frame(pack({"member": "c"})) + frame(b"\xc1garbage"), id="garbage-frame"),
        pytest.param(frame(pack({"member": "c"})) + frame(pack([[99, 1, 2]])), id="bad-message"),
        pytest.param(frame(pack({"member": "c"})) + struct.pack(">I", 2**32 - 1), id="oversize"),
        pytest.param(frame(pack({"member": "c"})) + struct.pack(">I", 0), id="empty-frame"),
    ],
)
def test_a_malformed_frame_closes_that_connection_only(garbage: bytes) -> None:
    async def main() -> None:
        a, _, b, inbox_b = await pair(max_frame_bytes=1 * 1024 * 1024)
        a.send([hb(1)])
        await eventually(lambda: len(inbox_b.messages) == 1)

        reader, writer = await raw_client(b.listen_port)
        writer.write(garbage)
        assert await closed_by_server(reader, writer)
        await eventually(lambda: b.stats.bad_frames == 1)

        a.send([hb(2)])  # the proper peer is still served, on its same connection
        await eventually(lambda: len(inbox_b.messages) == 2)
        assert b.inbound_members == ["a"]
        assert a.stats.reconnects == 0
        await stop_all(a, b)

    run(main)


# -- membership and lifecycle ----------------------------------------------------------------


def test_set_peers_adds_and_removes_a_peer() -> None:
    async def main() -> None:
        inbox_b = Inbox()
        b = transport("b", inbox=inbox_b)
        await b.start()
        a = transport("a")
        await a.start()
        a.send([hb(1)])
        assert a.stats.messages_dropped == 1  # b is not a peer yet

        a.set_peers({"b": (HOST, b.listen_port), "a": (HOST, a.listen_port)})
        assert a.peers == {"b": (HOST, b.listen_port)}  # never a link to itself
        a.send([hb(2)])
        await eventually(lambda: [m.commit for m in inbox_b.of_type(Heartbeat)] == [2])
        assert b.inbound_members == ["a"]

        a.set_peers({})
        assert a.peers == {}
        await eventually(lambda: b.inbound_members == [])  # the link's connection is closed
        a.send([hb(3)])
        assert a.stats.messages_dropped == 2
        assert len(inbox_b.messages) == 1
        await stop_all(a, b)

    run(main)


def test_stop_is_idempotent_and_send_after_stop_is_harmless() -> None:
    async def main() -> None:
        a, _, b, inbox_b = await pair()
        a.send([hb(1)])
        await eventually(lambda: len(inbox_b.messages) == 1)
        await asyncio.gather(a.stop(), a.stop())
        await a.stop()
        a.send([hb(2)])
        a.set_peers({"c": (HOST, 1)})
        assert a.stats.messages_dropped == 1
        await b.stop()
        assert b.inbound_members == []

    run(main)


def test_callbacks_that_raise_do_not_break_the_transport() -> None:
    async def main() -> None:
        seen: list[Message] = []

        def flaky(batch: list[Message]) -> None:
            seen.extend(batch)
            raise RuntimeError("member bug")

        def boom(peer: str) -> None:
            raise RuntimeError("member bug")

        b = PeerTransport("b", HOST, 0, {}, on_messages=flaky)
        await b.start()
        with reserved_port() as (_, dead):
            peers = {"b": (HOST, b.listen_port), "c": (HOST, dead)}
            a = PeerTransport("a", HOST, 0, peers, on_messages=Inbox(), on_unreachable=boom)
            await a.start()
            a.send([hb(1), hb(9, dst="c")])
            await eventually(lambda: len(seen) == 1 and a.queued("c") == 0)
            a.send([hb(2), hb(10, dst="c")])
            await eventually(lambda: len(seen) == 2)
        await stop_all(a, b)

    run(main)


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [min(1.0, 0.05 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays) <= 1.0
    backoff.reset()
    assert 0.025 <= backoff.next_delay() <= 0.05
    again = Backoff(random.Random(1))
    assert [again.next_delay() for _ in range(10)] == delays  # seeded: replays exactly
