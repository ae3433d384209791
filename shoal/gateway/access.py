"""Access log: one JSON object per answered request, written in batches.

    {"ts": 1767000000.123, "route": "users", "method": "GET", "path": "/api/users/7",
     "status": 200, "upstream": "users", "instance": "users-1", "attempts": 1,
     "duration_ms": 1.42, "bytes_in": 0, "bytes_out": 512, "client": "10.0.0.9",
     "request_id": "4bf92f3577b34da6", "error": null}

Theory of operation. A line is formatted on the request's path (a few microseconds:
strings from the client go through the C JSON encoder, everything else is a number or
a name from the route table) and appended to a list; the list is written with one
`write` when it holds 64 KiB or 200 ms after its first line, whichever comes first. A
log that cannot be written (a full disk, a closed pipe) drops lines and says so once:
the log must never stop the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from typing import IO

__all__ = ["AccessLog"]

log = logging.getLogger("shoal.gateway")

FLUSH_BYTES = 64 * 1024
FLUSH_DELAY = 0.2
_quote = json.encoder.encode_basestring


class AccessLog:
    """Buffered JSON lines to `target`: a path, "-" for stdout."""

    def __init__(self, target: str, loop: asyncio.AbstractEventLoop) -> None:
        self._own = target != "-"
        self._file: IO[bytes] = (
            open(target, "ab", buffering=0) if self._own else sys.stdout.buffer  # noqa: SIM115
        )
        self._loop = loop
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    def write(
        self,
        *,
        route: str,
        method: bytes,
        path: bytes,
        status: int,
        upstream: str,
        instance: str,
        attempts: int,
        seconds: float,
        bytes_in: int,
        bytes_out: int,
        client: str,
        request_id: str,
        error: str | None,
    ) -> None:
        line = (
            f'{{"ts":{time.time():.3f},"route":{_quote(route)},'
            f'"method":{_quote(method.decode("latin-1"))},'
            f'"path":{_quote(path.decode("latin-1"))},"status":{status},'
            f'"upstream":{_quote(upstream)},"instance":{_quote(instance)},'
            f'"attempts":{attempts},"duration_ms":{seconds * 1000:.3f},'
            f'"bytes_in":{bytes_in},"bytes_out":{bytes_out},"client":{_quote(client)},'
            f'"request_id":{_quote(request_id)},'
            f'"error":{"null" if error is None else _quote(error)}}}\n'
        )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "replace")
        self._lines, self._size = [], 0
        try:
            if self._own:
                os.write(self._file.fileno(), data)
            else:
                self._file.write(data)
                self._file.flush()
        except OSError as error:
            if not self._failed:
                self._failed = True
                log.error("access log cannot be written (%s): dropping lines", error)

    def close(self) -> None:
        self.flush()
        if self._own:
            with contextlib.suppress(OSError):
                self._file.close()
