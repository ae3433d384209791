"""Prometheus metrics of one member, in a registry of its own (several members may share
a process in tests).

Names follow shoal's one scheme (docs/observability.md): `shoal_` prefix, the unit in
the name (`_seconds`, `_entries`), `_total` on counters, few labels with bounded values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..raft import Role, Status


class MemberMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.term = Gauge("shoal_raft_term", "Current Raft term", registry=r)
        self.is_leader = Gauge("shoal_raft_is_leader", "1 on the leader", registry=r)
        self.commit = Gauge("shoal_raft_commit_index", "Raft commit index", registry=r)
        self.applied = Gauge("shoal_raft_applied_index", "Raft applied index", registry=r)
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
        self.commit_lag = Gauge(
            "shoal_raft_commit_lag_entries",
            "Committed entries this member has not applied yet",
            registry=r,
        )
        self.last_index = Gauge("shoal_raft_last_index", "Last index in the log", registry=r)
        self.follower_lag = Gauge(
            "shoal_raft_follower_lag_entries",
            "On the leader: entries each follower's log is behind the leader's",
            ["member"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "shoal_http_request_duration_seconds",
            "Time to answer an HTTP API request (to its first byte for streams)",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        self.leases = Gauge("shoal_leases", "Leases granted and not yet revoked", registry=r)
        self.revision = Gauge("shoal_kv_revision", "The store's current revision", registry=r)
        self.snapshots_installed = Counter(
            "shoal_snapshots_installed",
            "Snapshots received from a leader and installed",
            registry=r,
        )

        self._leader: str | None = None
        self._lagging: set[str] = set()

    def observe(self, status: Status, *, leases: int = 0, revision: int = 0) -> None:
        self.term.set(status.term)
        self.is_leader.set(1 if status.role is Role.LEADER else 0)
        self.commit.set(status.commit)
        self.applied.set(status.applied)
        self.commit_lag.set(max(0, status.commit - status.applied))
        self.last_index.set(status.last_index)
        self.leases.set(leases)
        self.revision.set(revision)
        if status.leader != self._leader:
            self._leader = status.leader
            self.leader_changes.inc()
        # Progress is known on the leader only; drop the series of members no longer
        # followed, so a demoted leader does not report a frozen lag for ever.
        followers = {name: p for name, p in status.progress.items() if name != status.id}
        for gone in self._lagging - followers.keys():
            self.follower_lag.remove(gone)
        for name, progress in followers.items():
            self.follower_lag.labels(name).set(max(0, status.last_index - progress.match))
        self._lagging = set(followers)

    def render(self) -> bytes:
        return generate_latest(self.registry)
