"""`RaftConfig`: the options of one Raft member (its id, timeouts, PreVote/CheckQuorum,
flow control), validated on construction.

Times are in ticks: the driver decides how long a tick is. (The module is `options`, not
`config`, so that it is never confused with `shoal.config`, the config center.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftConfig:
    id: str
    # A follower campaigns after a random timeout in [election_ticks, 2 * election_ticks).
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Flow control: bytes of entry data per AppendEntries and appends in flight per follower.
    max_msg_bytes: int = 1 << 20
    max_inflight: int = 256

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("member id must be non-empty")
        if self.heartbeat_ticks < 1:
            raise ValueError("heartbeat_ticks must be >= 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must be greater than heartbeat_ticks")
        if self.max_inflight < 1 or self.max_msg_bytes < 1:
            raise ValueError("max_inflight and max_msg_bytes must be >= 1")
