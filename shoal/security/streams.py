"""`OpenStreams`: cut a watch once its token no longer grants what it was opened with.

Theory of operation. A watch is judged when it opens (guard.py); without this, a watch
opened with a token that is later deleted -- or whose policy loses the rule -- would go
on delivering events until the client reconnects. The guard registers every watch it
lets through here, with its token and its needs. One checker task per member, running
only while some watch is open, re-resolves each distinct token once every
`CHECK_INTERVAL` seconds (from this member's own copy of the store, cached by revision in
`TokenStore`, so ten thousand watches sharing one token cost one lookup) and sets the
`cut` event of every watch whose token is gone or no longer grants one of its needs.
The guard then ends that response (see `AclGuard._stream`).

Which streams: the KV watch, the registry's and the config center's watches, and the
dashboard's cluster stream (`routes.is_watch`). Not a lease's keep-alive stream: closing
that stream revokes the lease at once (that is how a dead process's instances go
immediately), so cutting it would deregister a service the moment its token is deleted;
instead its reconnect is refused and the lease runs out its TTL, as after a crash.

Rules: a watch is cut within `CHECK_INTERVAL` of the change reaching this member's copy
(a delete made through another member adds one replication round-trip); it is never cut
while its token still grants its needs; nothing runs while no watch is open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from .policy import Need, allows
from .tokens import TokenStore

CHECK_INTERVAL = 1.0  # seconds between re-checks of the tokens of open watches


@dataclass(eq=False)
class _Open:
    secret: str
    needs: tuple[Need, ...]
    cut: asyncio.Event = field(default_factory=asyncio.Event)


class OpenStreams:
    def __init__(self, tokens: TokenStore, interval: float = CHECK_INTERVAL) -> None:
        self.tokens = tokens
        self.interval = interval
        self._open: set[_Open] = set()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.contextmanager
    def open(self, secret: str, needs: tuple[Need, ...]) -> Iterator[asyncio.Event]:
        """Register a watch for as long as the block runs; the event is set to cut it."""
        stream = _Open(secret, needs)
        self._open.add(stream)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._check())
        try:
            yield stream.cut
        finally:
            self._open.discard(stream)

    def check_now(self) -> None:
        """Cut every open watch whose token no longer grants its needs (one lookup per
        distinct token)."""
        by_secret: dict[str, list[_Open]] = {}
        for stream in self._open:
            by_secret.setdefault(stream.secret, []).append(stream)
        for secret, streams in by_secret.items():
            identity = self.tokens.resolve(secret)
            for stream in streams:
                if identity is None or not all(allows(identity.grants, n) for n in stream.needs):
                    stream.cut.set()

    async def _check(self) -> None:
        while self._open:
            await asyncio.sleep(self.interval)
            self.check_now()
        self._task = None

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


__all__ = ["CHECK_INTERVAL", "OpenStreams"]
