"""What a leader knows about each follower's log, and the flow control on sending to it.

Theory of operation (thesis 3.5 and etcd's progress states):

- PROBE: we do not know where the follower's log matches ours. Send one append at a time
  and wait for its answer (or a heartbeat reply) before the next, walking `next` back on
  each rejection.
- REPLICATE: the follower is known to match up to `match`; stream appends optimistically,
  moving `next` ahead, with at most `max_inflight` unacknowledged messages.
- SNAPSHOT: the entries it needs are compacted; one snapshot is on its way. Nothing else is
  sent until the follower acknowledges it (or enough heartbeats pass to send it again).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)  # last index of each append in flight
    pending_snapshot: int = 0
    snapshot_wait: int = 0  # heartbeat replies seen while a snapshot is outstanding
    recent_active: bool = True
    read_seq: int = 0  # newest ReadIndex round this follower acknowledged
    commit_sent: int = 0  # highest commit index sent to it in an append or a Commit

    def paused(self, max_inflight: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_wait = 0
        self.inflight.clear()

    def on_sent(self, last_sent: int | None) -> None:
        """Record an append just sent; `last_sent` is its last entry's index, if any."""
        if self.state is ProgressState.REPLICATE:
            if last_sent is not None:
                self.next = last_sent + 1
                self.inflight.append(last_sent)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower matches up to `index`; False if that is old news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def free_inflight_to(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()

    def maybe_decrease_to(self, rejected: int, hint: int) -> bool:
        """A rejection of the append after `rejected`; False if it answers an old message."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True
