"""An in-memory network with seeded loss, duplication, delay (hence reordering) and
partitions, symmetric or one-way. Pure: time is the simulator's, randomness is passed in.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from ..messages import Message

TICK = 100  # network time units per Raft tick; delays are drawn in these units


@dataclass(slots=True)
class NetworkFaults:
    loss: float = 0.0
    duplicate: float = 0.0
    min_delay: int = 1
    max_delay: int = 30  # up to 0.3 ticks: messages overtake one another


@dataclass(slots=True)
class SimNetwork:
    rng: random.Random
    faults: NetworkFaults = field(default_factory=NetworkFaults)
    now: int = 0
    blocked: set[tuple[str, str]] = field(default_factory=set)  # (src, dst) pairs cut
    _queue: list[tuple[int, int, Message]] = field(default_factory=list)
    _seq: int = 0
    sent: int = 0
    dropped: int = 0

    def send(self, m: Message) -> None:
        self.sent += 1
        if (m.src, m.dst) in self.blocked or self.rng.random() < self.faults.loss:
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        for _ in range(copies):
            delay = self.rng.randint(self.faults.min_delay, self.faults.max_delay)
            self._seq += 1
            heapq.heappush(self._queue, (self.now + delay, self._seq, m))

    def pop_due(self, until: int) -> Message | None:
        """The next message due before `until`, advancing the clock to it."""
        while self._queue and self._queue[0][0] < until:
            at, _, m = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            if (m.src, m.dst) not in self.blocked:
                return m
            self.dropped += 1  # the link was cut while the message was in flight
        return None

    def partition(self, groups: list[list[str]]) -> None:
        """Cut every link between members of different groups, both ways."""
        self.blocked.clear()
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                for x in a:
                    for y in b:
                        self.blocked.add((x, y))
                        self.blocked.add((y, x))

    def cut_one_way(self, src: str, dst: str) -> None:
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked.clear()

    @property
    def in_flight(self) -> int:
        return len(self._queue)
