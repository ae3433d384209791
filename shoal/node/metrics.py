"""Prometheus metrics of one member, in a registry of its own (several members may share
a process in tests)."""

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
            "Time to persist one Ready (write + fsync)",
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
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
        self.snapshots_installed = Counter(
            "shoal_snapshots_installed",
            "Snapshots received from a leader and installed",
            registry=r,
        )

    def observe(self, status: Status) -> None:
        self.term.set(status.term)
        self.is_leader.set(1 if status.role is Role.LEADER else 0)
        self.commit.set(status.commit)
        self.applied.set(status.applied)

    def render(self) -> bytes:
        return generate_latest(self.registry)
