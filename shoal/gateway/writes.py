"""Write coalescing: what the gateway writes during one event-loop iteration goes out at
its end, one `transport.write` per connection.

Why. On loopback, a write to a peer that sleeps in epoll wakes it, and in a VM that
wakeup (an inter-processor interrupt) costs several microseconds of the writer's CPU --
measured under wrk, ~10 % of the gateway's samples sat in the wakeup of `write`. The
loop hands the gateway a batch of ready connections at a time (tens under load); writing
each answer as soon as it is made wakes the peer once per answer, while writing them all
back to back at the end of the batch lets one wakeup cover most of them. Under light
load a batch is one connection and the flush follows at once.

Only small writes wait: a write of `DIRECT` bytes or more (a body streaming through)
goes to the transport at once, after whatever is pending, so that the transport's flow
control (pause_writing past its high-water mark, which pauses the other side) acts as
soon as the bytes are there -- a batched stream would let the loop read on and pile up
data. Bulk transfers gain nothing from coalescing anyway: the wakeup is per write, not
per byte.

How. A connection's `write` appends to its own `pending` list; the first one in an
iteration also enrols the connection here, and the first enrolment schedules `flush`
with `call_soon`, which runs after every I/O callback of the current iteration. Order
per connection is kept (one list each); a connection that closes flushes first, one that
aborts drops what is pending (it is being reset anyway).

Never: hold a write past the end of the iteration it was made in, or reorder the bytes
of one connection.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["DIRECT", "Sender", "WriteCoalescer", "flush"]

DIRECT = 16 * 1024  # a write this large is not held back


class Sender(Protocol):
    """A connection whose writes are coalesced: its bytes of this iteration, in order,
    and where they go (nothing goes to a closed connection)."""

    pending: list[bytes]
    closed: bool

    @property
    def transport(self) -> asyncio.Transport | None: ...


class WriteCoalescer:
    """The connections with pending writes in this iteration; see the module docstring."""

    __slots__ = ("_loop", "_scheduled", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: list[Sender] = []
        self._scheduled = False

    def enrol(self, sender: Sender) -> None:
        """`sender` has pending bytes: flush it at the end of this iteration."""
        self._waiting.append(sender)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        for sender in waiting:
            flush(sender)


def flush(sender: Sender) -> None:
    """Hand `sender`'s pending bytes to its transport (one write), unless it closed."""
    pending = sender.pending
    if pending:
        sender.pending = []
        transport = sender.transport
        if transport is not None and not sender.closed:
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
