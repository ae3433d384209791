"""Commit notices that wait a moment for a ride.

A leader tells a follower that holds every entry about a new commit index with a
`Commit` message (shoal/raft/raft.py), one frame each way it would not otherwise send.
Under steady writes the next `AppendEntries` to that follower follows within a
millisecond or two and carries the leader's commit index anyway, so a notice held for
`linger` seconds is usually dropped unsent: at one client on three members that is two
of a write's six peer frames, each 50-130 us of CPU for its sender and its receiver
(issue 14's per-hop trace). A notice nothing overtakes leaves when the linger ends.

Why it is safe: a `Commit` only lets a follower apply sooner; Raft's safety never
depends on it, and a lost one is made good by the next heartbeat. An append or a
heartbeat sent to the same follower later carries a commit index at least as new (both
are capped at what that follower holds, like the notice), so dropping the notice for it
loses nothing. etcd sends no notice at all and waits for the next append or heartbeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from ..raft import AppendEntries, Commit, Heartbeat, Message

# Long enough for a sequential client's next write to reach the leader (its round trip
# and the leader's parsing: ~0.3-1 ms here), short beside a heartbeat (50 ms).
DEFAULT_LINGER_S = 0.002


class CommitNotices:
    """Sends messages through `send`, holding `Commit`s up to `linger` seconds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[list[Message]], None],
        linger: float = DEFAULT_LINGER_S,
    ) -> None:
        self._loop = loop
        self._send = send
        self._linger = linger
        self._held: dict[str, Commit] = {}
        self._timer: asyncio.TimerHandle | None = None

    def send(self, messages: Iterable[Message]) -> None:
        held = self._held
        out: list[Message] = []
        for m in messages:
            if isinstance(m, Commit):
                if self._linger <= 0:
                    out.append(m)
                    continue
                prior = held.get(m.dst)
                if prior is None or m.commit >= prior.commit:
                    held[m.dst] = m
                continue
            if held and isinstance(m, (AppendEntries, Heartbeat)):
                prior = held.get(m.dst)
                if prior is not None and m.commit >= prior.commit:
                    del held[m.dst]  # this message tells the follower as much
            out.append(m)
        if out:
            self._send(out)
        if held and self._timer is None:
            self._timer = self._loop.call_later(self._linger, self.flush)

    def flush(self) -> None:
        """Send every held notice now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            held: list[Message] = [*self._held.values()]
            self._held.clear()
            self._send(held)

    def close(self) -> None:
        """Forget the held notices (the member is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()


__all__ = ["DEFAULT_LINGER_S", "CommitNotices"]
