"""uvicorn's httptools protocol, with each response's writes sent as one.

Why: uvicorn writes a response's status line and headers, then its body, as two
`transport.write` calls, and uvloop sends each at once -- two `send` syscalls for every
small answer. On the API's hot paths (a heartbeat, a KV put) those two syscalls were
~40% of the member's CPU per request in a profile. Here the transport is wrapped so that
the writes made during one step of the event loop are joined and sent together right
after it: the same bytes in the same order, one syscall.

Never: reorder bytes, or hold them past the current loop step (a streaming response's
chunks still leave as they are produced); closing flushes first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol"]


class _CoalescingTransport:
    """A transport proxy that batches `write`s until the end of the loop step."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        # Everything else (extra info, reading control, flow-control limits) is the
        # real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        proxy = _CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(proxy)  # type: ignore[arg-type]
