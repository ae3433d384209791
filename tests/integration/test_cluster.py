"""Three real members on loopback: failover under writes, catch-up by log and by snapshot,
leases across failover, membership changes and leadership transfer. The leader-kill test
runs plain and with TLS (mutual between members) and `--acl`, every request with a token."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.security.certs import init_certs
from shoal.testing import LocalCluster, ServerProcess, local_cluster, wait_for
from tests.security.conftest import Pki, tls_cluster


class Writer:
    """Writes distinct keys through any live member, retrying elsewhere; records acks."""

    def __init__(self, cluster: LocalCluster, prefix: str) -> None:
        self.cluster, self.prefix = cluster, prefix
        self.acked: dict[str, int] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in itertools.count():
            if self._stop.is_set():
                return
            key = f"{self.prefix}{i:06d}"
            for member in itertools.cycle(
                self.cluster.live() or list(self.cluster.members.values())
            ):
                if self._stop.is_set():
                    return
                try:
                    r = member.request(
                        "PUT", f"/api/v1/kv/{key}", json={"value": str(i)}, timeout=3
                    )
                except httpx.HTTPError:
                    self.errors += 1
                    continue
                if r.status_code == 200:
                    self.acked[key] = r.json()["revision"]
                    break
                self.errors += 1
                if self._stop.wait(0.02):
                    return

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        wait_for(lambda: len(self.acked) >= count, timeout, what=f"{count} acked writes")


def keys_on(member: ServerProcess, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    after = None
    while True:
        params: dict[str, Any] = {"prefix": prefix, "limit": 5000, "consistency": "stale"}
        if after:
            params["after"] = after
        page = member.get("/api/v1/kv", params=params).json()
        out.update({kv["key"]: kv["value"] for kv in page["kvs"]})
        if not page["more"]:
            return out
        after = page["next_after"]


def assert_everyone_has(cluster: LocalCluster, acked: dict[str, int], prefix: str) -> None:
    for member in cluster.live():
        wait_for(
            lambda m=member: set(acked) <= set(keys_on(m, prefix)),
            timeout=60,  # a deadline, not a wait: generous for a loaded CI machine
            what=f"{member.name} to hold every acknowledged write",
        )


@contextlib.contextmanager
def secured_cluster(root: Path) -> Iterator[LocalCluster]:
    """3 members with TLS and `--acl`, bootstrapped; the test's requests carry the
    management token and trust the CA (the LocalCluster helpers work unchanged)."""
    issued = init_certs(root / "certs")
    pki = Pki(
        root / "certs",
        issued.ca,
        issued.member_cert,
        issued.member_key,
        issued.client_cert,
        issued.client_key,
    )
    members = tls_cluster(root, pki, 3, extra=["--acl"])
    cluster = LocalCluster(root, 0)
    cluster.members = dict(members)
    try:
        cluster.start()
        first = members["n1"]
        answer = wait_for(
            lambda: (r := first.request("POST", "/api/v1/acl/bootstrap")).is_success and r,
            60,
            what="ACL bootstrap",
        )
        # Nothing gets in without the token, on any member.
        assert first.get("/api/v1/kv/f/x").status_code == 401
        for member in members.values():
            member.token = answer.json()["token"]
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("secured", [False, True], ids=["plain", "tls+acl"])
def test_leader_sigkill_under_writes_loses_nothing_and_restart_catches_up(
    tmp_path: Path, secured: bool
) -> None:
    clusters = secured_cluster if secured else lambda root: local_cluster(root, 3)
    with clusters(tmp_path) as cluster:
        first = cluster.leader()
        with Writer(cluster, "f/") as writer:
            writer.wait_for_acks(100)
            first.kill()
            before = len(writer.acked)
            second = cluster.leader()
            assert second.name != first.name
            writer.wait_for_acks(before + 100)
        assert_everyone_has(cluster, writer.acked, "f/")
        first.start().wait_ready()
        assert_everyone_has(cluster, writer.acked, "f/")
        # The restarted member replayed its log: it saw no snapshot from the leader.
        assert "shoal_snapshots_installed_total 0.0" in first.get("/metrics").text


def test_member_far_behind_catches_up_by_snapshot(tmp_path: Path) -> None:
    with local_cluster(tmp_path, 3, extra=["--snapshot-entries", "50"]) as cluster:
        leader = cluster.leader()
        follower = next(p for p in cluster.members.values() if p is not leader)
        follower.kill()
        with Writer(cluster, "s/") as writer:
            writer.wait_for_acks(300)
        follower.start().wait_ready()
        assert_everyone_has(cluster, writer.acked, "s/")
        metrics = follower.get("/metrics").text
        assert "shoal_snapshots_installed_total 1.0" in metrics or (
            "shoal_snapshots_installed_total 2.0" in metrics
        ), metrics


def test_lease_survives_leader_failover_while_kept_alive(tmp_path: Path) -> None:
    with local_cluster(tmp_path, 3) as cluster:
        leader = cluster.leader()
        lease = leader.request("POST", "/api/v1/leases", json={"ttl": 2}).json()["id"]
        leader.request("PUT", "/api/v1/kv/session", json={"value": "alive", "lease": lease})
        stop = threading.Event()

        def keepalive() -> None:
            while not stop.wait(0.3):
                for member in cluster.live():
                    try:
                        r = member.request("POST", f"/api/v1/leases/{lease}/keepalive", timeout=1)
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 200:
                        break

        keeper = threading.Thread(target=keepalive, daemon=True)
        keeper.start()
        try:
            leader.kill()
            new = cluster.leader()
            # Well past the TTL the key must still be there: the new leader gave the lease
            # a fresh TTL and keep-alives reached it. Checked continuously, not once.
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                assert new.get("/api/v1/kv/session").status_code == 200
        finally:
            stop.set()
            keeper.join()
        wait_for(
            lambda: new.get("/api/v1/kv/session").status_code == 404,
            timeout=8,
            what="the lease to expire once keep-alives stop",
        )


def test_grow_by_join_transfer_and_shrink(tmp_path: Path) -> None:
    first = ServerProcess("n1", tmp_path / "n1" / "data").start()
    members = [first]
    try:
        first.wait_ready()
        first.request("PUT", "/api/v1/kv/before", json={"value": "1"})
        for name in ("n2", "n3"):
            joiner = ServerProcess(name, tmp_path / name / "data", join=first.url).start()
            members.append(joiner)
            joiner.wait_ready(20)

            def is_voter(n: str = name) -> bool:
                status = first.get("/api/v1/cluster").json()
                return any(m["name"] == n and m["voter"] for m in status["members"])

            wait_for(is_voter, timeout=20, what=f"{name} promoted to voter")
        for member in members:
            wait_for(
                lambda m=member: (
                    m.get("/api/v1/kv/before", params={"consistency": "stale"}).status_code == 200
                ),
                what=f"{member.name} to have the data",
            )
        status = first.get("/api/v1/cluster").json()
        assert sorted(m["name"] for m in status["members"] if m["voter"]) == ["n1", "n2", "n3"]

        leader_name = status["leader"]
        target = "n3" if leader_name != "n3" else "n2"
        r = first.request("POST", "/api/v1/cluster/transfer", json={"to": target})
        assert r.status_code == 200, r.text
        wait_for(
            lambda: first.get("/api/v1/cluster").json()["leader"] == target,
            what=f"leadership to move to {target}",
        )

        removed = next(n for n in ("n1", "n2", "n3") if n != target)
        r = first.request("DELETE", f"/api/v1/cluster/members/{removed}")
        assert r.status_code == 200, r.text
        survivor = next(m for m in members if m.name == target)
        wait_for(
            lambda: (
                sorted(
                    m["name"]
                    for m in survivor.get("/api/v1/cluster").json()["members"]
                    if m["voter"]
                )
                == sorted({"n1", "n2", "n3"} - {removed})
            ),
            what=f"{removed} removed",
        )
        r = survivor.request("PUT", "/api/v1/kv/after", json={"value": "2"})
        assert r.status_code == 200, r.text
    finally:
        for member in members:
            member.kill()
