"""Prometheus metrics of one member, in a registry of its own (several members may share
a process in tests).

Names follow shoal's one scheme (docs/observability.md): `shoal_` prefix, the unit in
the name (`_seconds`, `_entries`), `_total` on counters, few labels with bounded values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..raft import Role, Status


class MemberMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.proposals = Counter("shoal_proposals", "Entries proposed by this member", registry=r)
        self.fsync_seconds = Histogram(
            "shoal_wal_persist_seconds",
            "Fsync latency: the WAL's flush and fdatasync, once per Ready that needs one",
            registry=r,
            # A healthy local disk is ~0.3 ms; etcd's "slow fdatasync" warning is 1 s.
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 1.0),
        )
        self.requests = Counter(
            "shoal_http_requests", "HTTP API requests", ["route", "status"], registry=r
        )
        self.watchers = Gauge("shoal_watchers", "Open watch streams", registry=r)
        self.checks_owned = Gauge(
            "shoal_health_checks_owned",
            "Active HTTP/TCP health checks this member runs (it owns them by rendezvous hashing)",
            registry=r,
        )
        self.leader_changes = Counter(
            "shoal_raft_leader_changes",
            "Times this member saw the cluster's leader change (a new leader, or none)",
            registry=r,
        )
        self.request_seconds = Histogram(
            "shoal_http_request_duration_seconds",
            "Time to answer an HTTP API request (to its first byte for streams)",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        self.snapshots_installed = Counter(
            "shoal_snapshots_installed",
            "Snapshots received from a leader and installed",
            registry=r,
        )

        self.registry.register(_RaftCollector(self))
        self.source: Callable[[], tuple[Status, int, int]] | None = None
        self._leader: str | None = None

    def watch(self, source: Callable[[], tuple[Status, int, int]]) -> None:
        """Read (Raft status, leases, revision) from `source` at each scrape. Sampled
        then, not set on every Ready: setting ten gauges per Ready was ~5% of a member's
        CPU at one client (issue 14)."""
        self.source = source

    def saw_leader(self, leader: str | None) -> None:
        """Count a change of leader (a new one, or none); called whenever Raft's soft
        state changes, so no change is missed between scrapes."""
        if leader != self._leader:
            self._leader = leader
            self.leader_changes.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RaftCollector(Collector):
    """The Raft and store gauges, read from the member's status when scraped."""

    def __init__(self, metrics: MemberMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        source = self._metrics.source
        if source is None:
            return
        status, leases, revision = source()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("shoal_raft_term", "Current Raft term", status.term)
        yield gauge("shoal_raft_is_leader", "1 on the leader", int(status.role is Role.LEADER))
        yield gauge("shoal_raft_commit_index", "Raft commit index", status.commit)
        yield gauge("shoal_raft_applied_index", "Raft applied index", status.applied)
        yield gauge(
            "shoal_raft_commit_lag_entries",
            "Committed entries this member has not applied yet",
            max(0, status.commit - status.applied),
        )
        yield gauge("shoal_raft_last_index", "Last index in the log", status.last_index)
        # Progress is known on the leader only, so a demoted leader reports no lag at all.
        lag = GaugeMetricFamily(
            "shoal_raft_follower_lag_entries",
            "On the leader: entries each follower's log is behind the leader's",
            labels=["member"],
        )
        for name, progress in status.progress.items():
            if name != status.id:
                lag.add_metric([name], max(0, status.last_index - progress.match))
        yield lag
        yield gauge("shoal_leases", "Leases granted and not yet revoked", leases)
        yield gauge("shoal_kv_revision", "The store's current revision", revision)
