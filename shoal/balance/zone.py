"""Zone-aware preference: keep traffic in the caller's zone while that zone can carry it.

Envoy's zone-aware routing sends a request to the local zone when the local zone's share
of the upstream hosts is at least the local zone's share of the callers, and otherwise
routes only the fraction it can carry locally and spreads the rest across zones. We keep
that rule with one simplification, because a balancer does not know where the other
callers are: the callers' share of the local zone, `local_traffic_share`, is an option,
and by default we assume callers are spread like the upstream's zones, one zone's worth,
``1 / (number of distinct zones among the hosts)``.

    capacity share  c = local capacity / total capacity
    p(local)        = 1                           if c >= local_traffic_share
                    = c / local_traffic_share     otherwise
                    = c                           if the pool has fewer than
                                                  `zone_min_hosts` hosts (no preference)

Capacity is the sum of effective weights for the policies that honour weights, the host
count for round_robin and random. A pick goes to the local hosts with probability
p(local) and to the other hosts otherwise; either way, if the chosen side has nothing
available (empty or all excluded), the other side is asked. With a hash key, the coin is
the key's own hash (its high bits, independent of its placement), so a key keeps going
to the same side while the pool stays the same.

`zone_min_hosts` defaults to 6, Envoy's min_cluster_size: in a small pool a zone's share
is too coarse to route by, so the pool is balanced as a whole (p = c spreads traffic in
proportion to capacity, the same as no preference).

Example: three zones of three hosts, two hosts of the local zone down. c = 1/7, the
traffic share 1/3, so p = 3/7 of the local callers' requests reach the one local host:
1/3 * 3/7 = 1/7 of all traffic, its fair share, instead of the 1/3 a strict preference
would pile on it.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ZONE_MIN_HOSTS = 6  # Envoy's zone_aware_lb_config.min_cluster_size default


@dataclass(frozen=True, slots=True, kw_only=True)
class ZonePreference:
    local_zone: str
    min_hosts: int = DEFAULT_ZONE_MIN_HOSTS
    local_traffic_share: float | None = None  # None: 1 / zones among the hosts

    def local_probability(
        self, local_capacity: float, total_capacity: float, hosts: int, zones: int
    ) -> float:
        """How often a pick should try the local side first, in [0, 1]."""
        if local_capacity <= 0 or total_capacity <= 0:
            return 0.0
        share = local_capacity / total_capacity
        if share >= 1.0:
            return 1.0
        if hosts < self.min_hosts:
            return share
        traffic = self.local_traffic_share
        if traffic is None:
            traffic = 1.0 / max(zones, 1)
        return 1.0 if share >= traffic else share / traffic
