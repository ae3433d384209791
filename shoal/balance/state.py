"""`HostState`: the balancer's mutable record of one host, shared by every part of a pool.

One record per host id lives in the pool (`pool.py`) for as long as the host stays; the
pickers of every tier and zone hold references to the same records, so a request counted
by `started` is seen by whichever picker later looks at the host, and a host that moves
between tiers (weight set to 0) or zones keeps its counters.

Fields are plain attributes on a slotted class, not a frozen dataclass: they change on
every request, and the hot path reads them directly.
"""

from __future__ import annotations

from .host import Host


class HostState:
    """What the balancer knows about one host beyond its `Host` value."""

    __slots__ = (
        "current",
        "host",
        "id",
        "measured",
        "ok_latency",
        "outstanding",
        "rtt",
        "rtt_at",
        "weight",
    )

    def __init__(self, host: Host, now: float) -> None:
        self.host = host
        self.id = host.id  # read on every exclude check; one attribute hop less
        # The weight pickers use: the host's weight after slow start, or 1.0 in the
        # backup tier (weight-0 hosts picked among themselves). Set by the pool.
        self.weight = host.weight
        self.outstanding = 0  # requests started and not yet finished
        # Peak-EWMA latency estimate in seconds, as of `rtt_at` (see peak_ewma.py).
        self.rtt = 0.0
        self.rtt_at = now
        self.measured = False  # no request has finished yet: the estimate is a guess
        self.ok_latency = -1.0  # latency of its last successful request; -1: none yet
        self.current = 0.0  # smooth weighted round robin's running weight (smooth_wrr.py)

    def __repr__(self) -> str:
        return (
            f"HostState({self.id!r}, weight={self.weight:g}, outstanding={self.outstanding}, "
            f"rtt={self.rtt:.6g}, measured={self.measured})"
        )
