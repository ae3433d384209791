"""Leases under leadership that keeps moving, on three real members (issue 17).

A lease whose holder died used to live ~20 s past its 5 s TTL while leadership moved
every 2 s: each new leader restarted every TTL. Now each member knows every lease's
deadline (the leader reports renewals through the log once per election timeout), so a
dead lease is gone within TTL + 2 election timeouts however often leadership moves --
and a lease that is kept alive never expires, not on a transfer, not while the leader is
frozen (SIGSTOP) and others take over, not when the frozen leader wakes up.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from shoal.testing import LocalCluster, ServerProcess, local_cluster, wait_for

TTL = 5
ELECTION = 10 * 0.05  # --election-ticks x --tick-ms, the defaults
# Beyond the bound itself: a tick to notice, a commit to revoke, and this test's own
# polling (three HTTP reads a round) on a loaded 2-core machine. Measured here: gone
# 5.55-5.67 s after the last renewal, against a bound of 6 s; it used to be ~25 s. At
# load average ~18 (four test suites at once) it went at 7.30 s: the polling, not the
# lease, was late. 2 s still fails the old behaviour by far.
SLACK = 2.0


class KeepAlive:
    """A live holder: renews `lease` every TTL/3 through whichever member answers."""

    def __init__(self, cluster: LocalCluster, lease: int) -> None:
        self.cluster, self.lease = cluster, lease
        self.last_ok = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(TTL / 3):
            for member in self.cluster.live():
                try:
                    path = f"/api/v1/leases/{self.lease}/keepalive"
                    if member.request("POST", path, timeout=1).status_code == 200:
                        self.last_ok = time.monotonic()
                        break
                except httpx.HTTPError:
                    continue

    def __enter__(self) -> KeepAlive:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def grant(s: ServerProcess, key: str) -> int:
    lease: int = s.request("POST", "/api/v1/leases", json={"ttl": TTL}).json()["id"]
    r = s.request("PUT", f"/api/v1/kv/{key}", json={"value": "held", "lease": lease})
    assert r.status_code == 200, r.text
    return lease


def present(cluster: LocalCluster, key: str) -> bool:
    for member in cluster.live():
        try:
            r = member.get(f"/api/v1/kv/{key}", timeout=2)
        except httpx.HTTPError:
            continue
        if r.status_code in (200, 404):
            return r.status_code == 200
    raise AssertionError("no member could answer a read")


def transfer(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    target = next(p for p in cluster.live() if p is not leader)
    r = leader.request("POST", "/api/v1/cluster/transfer", json={"to": target.name})
    assert r.status_code in (200, 409), r.text  # 409: a transfer already under way


def test_a_dead_lease_expires_on_time_while_leadership_moves_every_2s(tmp_path: Path) -> None:
    with local_cluster(tmp_path, 3) as cluster:
        leader = cluster.leader()
        dead, live = grant(leader, "dead"), grant(leader, "live")
        with KeepAlive(cluster, live):
            # The doomed holder renews a few times through the transfers, then dies.
            started = last_renewal = time.monotonic()
            next_transfer = time.monotonic()
            gone_at = None
            deadline = time.monotonic() + 4 + TTL + 2 * ELECTION + 10
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_transfer:
                    transfer(cluster)
                    next_transfer = now + 2.0
                if now - started < 4 and now - last_renewal >= TTL / 3:
                    r = cluster.leader().request("POST", f"/api/v1/leases/{dead}/keepalive")
                    if r.status_code == 200:
                        last_renewal = time.monotonic()
                if not present(cluster, "dead"):
                    gone_at = time.monotonic()
                    break
                assert present(cluster, "live"), "a lease kept alive expired"
                time.sleep(0.02)
            assert gone_at is not None, "the dead lease outlived the whole test"
            late = gone_at - last_renewal
            print(f"the dead lease went {late:.2f}s after its last renewal (TTL {TTL}s)")
            assert late <= TTL + 2 * ELECTION + SLACK, f"gone {late:.2f}s after its renewal"
            # Keep moving leadership a while longer: the live lease must stay.
            until = time.monotonic() + 2 * TTL
            while time.monotonic() < until:
                if time.monotonic() >= next_transfer:
                    transfer(cluster)
                    next_transfer = time.monotonic() + 2.0
                assert present(cluster, "live"), "a lease kept alive expired"
                time.sleep(0.05)


def test_a_frozen_leader_neither_loses_a_live_lease_nor_revokes_it_on_waking(
    tmp_path: Path,
) -> None:
    with local_cluster(tmp_path, 3) as cluster:
        frozen = cluster.leader()
        live = grant(frozen, "live")
        assert frozen.proc is not None
        with KeepAlive(cluster, live):
            os.kill(frozen.proc.pid, signal.SIGSTOP)
            try:
                others = [p for p in cluster.members.values() if p is not frozen]
                wait_for(
                    lambda: any(
                        p.get("/api/v1/cluster", timeout=1).json()["role"] == "leader"
                        for p in others
                    ),
                    15,
                    what="a new leader while the old one is frozen",
                )
                until = time.monotonic() + TTL + 1
                while time.monotonic() < until:  # longer than the TTL, frozen throughout
                    r = others[0].get("/api/v1/kv/live", params={"consistency": "stale"})
                    assert r.status_code == 200, "the live lease expired during the freeze"
                    time.sleep(0.05)
            finally:
                os.kill(frozen.proc.pid, signal.SIGCONT)
            # Awake, it finds every lease overdue by its own clock; it must not revoke.
            until = time.monotonic() + 3
            while time.monotonic() < until:
                assert present(cluster, "live"), "the woken ex-leader revoked a live lease"
                time.sleep(0.05)
