"""Peer transport: Raft messages between members over TCP.

Theory of operation
-------------------
Every member listens on its peer address and dials every other member. A connection
carries traffic one way only: the dialer writes, the listener reads. Two members are
joined by two connections, one each way, so neither side's writes ever wait on its own
reads.

The wire is a stream of frames, each ``[u32 big-endian length][payload]``. The dialer's
first frame is a hello, the msgpack map ``{"member": <id>}``, which names it to the
listener; every later frame is one batch of Raft messages from ``raft_codec.encode_messages``.

Outbound, each peer has a ``_Link``: a bounded queue and a writer task that owns the
connection. ``send`` appends to queues and wakes tasks, so it never blocks and never
raises for network trouble. A woken writer takes *everything* queued and writes it as one
frame (split only to stay under ``max_frame_bytes``) and one drain; messages produced in
one turn of the loop therefore share a frame. (Writing from ``send`` itself when the
link is idle saved a loop turn at one client but cost 30 % of 3-member writes at 64
clients: every proposal became its own frame and its own follower fsync.) Connections
are opened lazily, when there is something to send.

Inbound, each accepted connection gets a reader task: it reads the hello, then decodes
frames and hands each batch to ``on_messages``. A newer hello from the same member
replaces (closes) the older connection, which can only be a stale one.

Rules
-----
1. Raft tolerates loss, not unbounded queues. A full queue drops its oldest messages; a
   failed connect attempt drops the whole queue (by the time a retry succeeds those
   messages are stale heartbeats and appends the leader will resend); a batch in flight
   when its connection breaks is dropped. Each drop counts in ``stats.messages_dropped``,
   as do messages for unknown peers and messages too large for one frame.
2. Order is preserved per peer: one queue, one connection, one writer.
3. A peer's inbound connection that ends (and was not replaced by a newer one from it)
   is reported through ``on_inbound_closed``: the member's hint that its leader died.
4. A failed connect or a dropped connection is reported through ``on_unreachable`` and
   retried after an exponential backoff with jitter (50 ms doubling to 1 s), which a
   successful connect resets.
5. Peer input is untrusted. A frame that is empty, longer than ``max_frame_bytes`` or does
   not decode closes that one connection and counts in ``stats.bad_frames``; nothing else
   notices. Messages not addressed to this member are dropped.
6. ``stop`` closes the listener and every connection and awaits every task started here.
   It is idempotent; ``send`` and ``set_peers`` after it do nothing.
7. With TLS (``server_ssl``/``client_ssl``) both directions are mutual TLS: a connection
   whose certificate the CA did not sign fails its handshake before any frame is read.
8. Everything runs on the member's event loop (asyncio or uvloop); nothing here is
   thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..raft import Message
from .raft_codec import CodecError, decode_messages, encode_messages, guarded, pack, unpack

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_HEADER = struct.Struct(">I")
_CLOSE_TIMEOUT = 0.5  # seconds a closing connection may take to flush before it is aborted


@dataclass(slots=True)
class TransportStats:
    """Counters for /metrics and tests. Only ever increase."""

    frames_sent: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    reconnects: int = 0  # connections established after a failed attempt or a drop
    bad_frames: int = 0


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits a random time in
    [d/2, d] where d = min(cap, base * 2**n). The RNG is passed in."""

    rng: random.Random
    base: float = 0.05
    cap: float = 1.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


class _BadFrame(Exception):
    """A frame from a peer that breaks the framing rules (never escapes this module)."""


@dataclass(eq=False, slots=True)
class _Link:
    """One peer's outbound side: its queue and the connection its writer task owns."""

    peer: str
    addr: tuple[str, int]
    queue: deque[Message]
    backoff: Backoff
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    broken: bool = False  # a connect failed or a connection dropped since the last connect

    def connection_dead(self) -> bool:
        """The listener never writes, so anything on our read side is EOF or an error."""
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        return reader.at_eof() or reader.exception() is not None or writer.is_closing()


class PeerTransport:
    """Sends Raft messages to peers and delivers the ones addressed to `member_id`.

    `on_messages(batch)` is called on the event loop with each received batch, in the order
    the sender sent it; `on_unreachable(peer)` when connecting to `peer` fails or its
    connection drops; `on_inbound_closed(peer)` when `peer`'s connection to us ends and
    no newer one from it replaced it (a peer process that died closes it at once). None
    of them may block; an exception from one is logged, not raised.
    """

    def __init__(
        self,
        member_id: str,
        listen_host: str,
        listen_port: int,
        peers: dict[str, tuple[str, int]],
        on_messages: Callable[[list[Message]], None],
        on_unreachable: Callable[[str], None] | None = None,
        on_inbound_closed: Callable[[str], None] | None = None,
        *,
        max_queue: int = 4096,
        max_frame_bytes: int = 64 * MiB,
        connect_timeout: float = 1.0,
        write_timeout: float = 10.0,
        hello_timeout: float = 10.0,
        rng: random.Random | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be positive, got {max_queue}")
        self.member_id = member_id
        self.stats = TransportStats()
        self._host = listen_host
        self._port = listen_port
        self._on_messages = on_messages
        self._on_unreachable = on_unreachable
        self._on_inbound_closed = on_inbound_closed
        self._max_queue = max_queue
        self._max_frame_bytes = max_frame_bytes
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._hello_timeout = hello_timeout
        self._rng = rng if rng is not None else random.Random()
        # mTLS between members (shoal.security.tls): None is plain TCP.
        self._server_ssl, self._client_ssl = server_ssl, client_ssl
        self._hello = pack({"member": member_id})
        self._links: dict[str, _Link] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._inbound: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._inbound_by_member: dict[str, asyncio.Task[None]] = {}
        self._server: asyncio.Server | None = None
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self.set_peers(peers)

    # -- public surface -------------------------------------------------------------------

    @property
    def listen_port(self) -> int:
        """The port listened on; after `start` with port 0, the one the OS chose."""
        return self._port

    @property
    def peers(self) -> dict[str, tuple[str, int]]:
        return {peer: link.addr for peer, link in self._links.items()}

    @property
    def inbound_members(self) -> list[str]:
        """Members with an open connection to us (those that have said hello)."""
        return sorted(self._inbound_by_member)

    def queued(self, peer: str) -> int:
        """Messages waiting for `peer` (0 for an unknown peer)."""
        link = self._links.get(peer)
        return len(link.queue) if link is not None else 0

    async def start(self) -> None:
        if self._started or self._stopping:
            raise RuntimeError("PeerTransport.start called twice")
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, ssl=self._server_ssl
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._started = True
        for link in self._links.values():
            self._spawn(link)

    async def stop(self) -> None:
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self._server is not None:
                self._server.close()
            tasks = list(self._retired) + list(self._inbound)
            for link in self._links.values():
                self._drop(link.queue)
                if link.task is not None:
                    tasks.append(link.task)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()
        finally:
            self._stopped.set()

    def send(self, messages: Iterable[Message]) -> None:
        """Queue `messages` for their `dst` peers. Never blocks; never raises for network
        trouble. A full queue drops its oldest message; unknown peers' messages are dropped."""
        if self._stopping:
            self._drop(messages)
            return
        links = self._links
        dropped = 0
        for m in messages:
            link = links.get(m.dst)
            if link is None:
                dropped += 1
                continue
            queue = link.queue
            if len(queue) == queue.maxlen:
                dropped += 1  # deque(maxlen) discards the oldest on append
            queue.append(m)
            link.wake.set()
        self.stats.messages_dropped += dropped

    def set_peers(self, peers: dict[str, tuple[str, int]]) -> None:
        """Make the outbound links match `peers` (this member is ignored if listed). A peer
        whose address changed gets a new link; a removed peer's queue is dropped."""
        if self._stopping:
            return
        wanted = {p: (h, int(port)) for p, (h, port) in peers.items() if p != self.member_id}
        for peer, link in list(self._links.items()):
            if wanted.get(peer) != link.addr:
                del self._links[peer]
                self._retire(link)
        for peer, addr in wanted.items():
            if peer not in self._links:
                queue: deque[Message] = deque(maxlen=self._max_queue)
                link = _Link(peer=peer, addr=addr, queue=queue, backoff=Backoff(self._rng))
                self._links[peer] = link
                if self._started:
                    self._spawn(link)

    # -- outbound -------------------------------------------------------------------------

    def _spawn(self, link: _Link) -> None:
        name = f"transport {self.member_id}->{link.peer}"
        link.task = asyncio.create_task(self._run_link(link), name=name)
        link.task.add_done_callback(_log_failure)

    def _retire(self, link: _Link) -> None:
        self._drop(link.queue)
        link.queue.clear()
        if link.task is not None:
            link.task.cancel()
            self._retired.add(link.task)
            link.task.add_done_callback(self._retired.discard)

    async def _run_link(self, link: _Link) -> None:
        try:
            while True:
                if not link.queue:
                    link.wake.clear()
                    await link.wake.wait()
                    continue
                if link.writer is not None and link.connection_dead():
                    await self._lose_connection(link, "closed by peer")
                    await asyncio.sleep(link.backoff.next_delay())
                    continue
                if link.writer is None and not await self._connect(link):
                    self._drop(link.queue)
                    link.queue.clear()
                    self._report_unreachable(link.peer)
                    await asyncio.sleep(link.backoff.next_delay())
                    continue
                batch = list(link.queue)
                link.queue.clear()
                try:
                    await self._write_batch(link, batch)
                except (OSError, TimeoutError) as error:
                    self._drop(batch)
                    await self._lose_connection(link, error)
                    await asyncio.sleep(link.backoff.next_delay())
        finally:
            if link.writer is not None:
                writer, link.reader, link.writer = link.writer, None, None
                await _close(writer)

    async def _connect(self, link: _Link) -> bool:
        host, port = link.addr
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=self._client_ssl,
                    server_hostname=host if self._client_ssl else None,
                )
        except (OSError, TimeoutError) as error:
            log.debug(
                "%s: cannot connect to %s at %s:%s: %s",
                self.member_id,
                link.peer,
                host,
                port,
                error,
            )
            link.broken = True
            return False
        _set_nodelay(writer)
        writer.write(_HEADER.pack(len(self._hello)) + self._hello)
        link.reader, link.writer = reader, writer
        if link.broken:
            self.stats.reconnects += 1
            link.broken = False
        link.backoff.reset()
        return True

    async def _lose_connection(self, link: _Link, why: object) -> None:
        log.debug("%s: connection to %s lost: %s", self.member_id, link.peer, why)
        writer = link.writer
        link.reader = link.writer = None
        link.broken = True
        self._report_unreachable(link.peer)
        if writer is not None:
            await _close(writer)

    async def _write_batch(self, link: _Link, batch: list[Message]) -> None:
        writer = link.writer
        assert writer is not None
        self._write_frames(writer, batch)
        async with asyncio.timeout(self._write_timeout):
            await writer.drain()

    def _write_frames(self, writer: asyncio.StreamWriter, batch: list[Message]) -> None:
        frames = self._encode(batch)
        # One write (one send syscall) for every frame's header and payload.
        writer.write(b"".join(_HEADER.pack(len(payload)) + payload for payload, _ in frames))
        self.stats.frames_sent += len(frames)
        self.stats.messages_sent += sum(count for _, count in frames)

    def _encode(self, batch: list[Message]) -> list[tuple[bytes, int]]:
        """Frames (payload, message count) for `batch`: one unless it is too big, halved
        until every frame fits. A message that alone does not fit is dropped."""
        try:
            payload = encode_messages(batch)
        except (TypeError, ValueError, OverflowError):
            if len(batch) == 1:  # our own bug, not the network's: say so and carry on
                log.exception("%s: cannot encode %r; dropped", self.member_id, batch[0])
                self.stats.messages_dropped += 1
                return []
        else:
            if len(payload) <= self._max_frame_bytes:
                return [(payload, len(batch))]
            if len(batch) == 1:
                log.error(
                    "%s: %s to %s is %d bytes, over max_frame_bytes=%d; dropped",
                    self.member_id,
                    type(batch[0]).__name__,
                    batch[0].dst,
                    len(payload),
                    self._max_frame_bytes,
                )
                self.stats.messages_dropped += 1
                return []
        half = len(batch) // 2
        return self._encode(batch[:half]) + self._encode(batch[half:])

    def _report_unreachable(self, peer: str) -> None:
        if self._on_unreachable is None:
            return
        try:
            self._on_unreachable(peer)
        except Exception:
            log.exception("%s: on_unreachable(%r) raised", self.member_id, peer)

    def _report_inbound_closed(self, peer: str) -> None:
        if self._on_inbound_closed is None:
            return
        try:
            self._on_inbound_closed(peer)
        except Exception:
            log.exception("%s: on_inbound_closed(%r) raised", self.member_id, peer)

    def _drop(self, messages: Iterable[Message]) -> None:
        self.stats.messages_dropped += sum(1 for _ in messages)

    # -- inbound --------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            writer.close()
            return
        _set_nodelay(writer)
        task = asyncio.create_task(
            self._serve(reader, writer), name=f"transport {self.member_id}<-?"
        )
        self._inbound[task] = writer
        task.add_done_callback(self._inbound_done)

    def _inbound_done(self, task: asyncio.Task[None]) -> None:
        self._inbound.pop(task, None)
        _log_failure(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        member: str | None = None
        me = asyncio.current_task()
        try:
            async with asyncio.timeout(self._hello_timeout):
                hello = await self._read_frame(reader)
            if hello is None:
                return
            member = guarded(_parse_hello, hello, "hello")
            older = self._inbound_by_member.get(member)
            if older is not None:
                older.cancel()  # the peer reconnected: its old connection is stale
            assert me is not None
            self._inbound_by_member[member] = me
            while (payload := await self._read_frame(reader)) is not None:
                batch = [m for m in decode_messages(payload) if m.dst == self.member_id]
                if batch:
                    self._deliver(batch)
        except (_BadFrame, CodecError) as error:
            self.stats.bad_frames += 1
            peer = member or writer.get_extra_info("peername")
            log.warning("%s: bad frame from %s, closing: %s", self.member_id, peer, error)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
            log.debug("%s: inbound from %s ended: %r", self.member_id, member, error)
        finally:
            if member is not None and self._inbound_by_member.get(member) is me:
                del self._inbound_by_member[member]
                if not self._stopping:
                    self._report_inbound_closed(member)
            await _close(writer)

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next frame's payload, or None at a clean end of stream."""
        try:
            header = await reader.readexactly(_HEADER.size)
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                return None
            raise
        (length,) = _HEADER.unpack(header)
        if not 0 < length <= self._max_frame_bytes:
            raise _BadFrame(f"frame length {length} outside 1..{self._max_frame_bytes}")
        return await reader.readexactly(length)

    def _deliver(self, batch: list[Message]) -> None:
        try:
            self._on_messages(batch)
        except Exception:
            log.exception("%s: on_messages raised; batch of %d dropped", self.member_id, len(batch))


def _parse_hello(payload: bytes) -> str:
    hello = unpack(payload)
    member = hello.get("member") if isinstance(hello, dict) else None
    if not isinstance(member, str) or not member:
        raise ValueError(f"expected {{'member': <id>}}, got {hello!r:.100}")
    return member


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a connection, giving it a moment to flush; abort it if the peer won't read."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("transport task %s failed", task.get_name(), exc_info=error)


__all__ = ["Backoff", "PeerTransport", "TransportStats"]
