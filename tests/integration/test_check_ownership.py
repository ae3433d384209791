"""Active checks on a real 3-member cluster: each check is owned by exactly one live
member (rendezvous hashing over the leader's roster of live members), and when the owner
is SIGKILLed another member takes the check over -- without marking anything critical on
the way (DESIGN.md decision 7, issue 4).

Takeover and detection delays are printed (run with ``-s``); the asserted bounds are
generous to allow for a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.registry import check_owner, instance_key
from shoal.testing import HttpService, LocalCluster, ServerProcess, local_cluster, wait_for

MEMBERS = ["n1", "n2", "n3"]
# The timeout is the whole interval: on a loaded test machine a healthy service that
# answers late must not count as a failure (that is not what these tests are about).
CHECK = {"type": "http", "path": "/healthz", "interval": "250ms", "timeout": "250ms", "fall": 2}


@pytest.fixture
def services() -> Iterator[dict[str, HttpService]]:
    made: dict[str, HttpService] = {}
    yield made
    for service in made.values():
        service.stop()


def instance_ids() -> list[str]:
    """Ids such that every member owns two of them under the full roster (the hash is
    stable, so this is the same list on every run)."""
    chosen: list[str] = []
    per: dict[str, int] = dict.fromkeys(MEMBERS, 0)
    i = 0
    while min(per.values()) < 2:
        iid = f"w{i}"
        owner = check_owner(instance_key("web", iid), MEMBERS)
        assert owner is not None
        if per[owner] < 2:
            per[owner] += 1
            chosen.append(iid)
        i += 1
    return chosen


def checks_of(member: ServerProcess) -> dict[str, Any]:
    r = member.get("/api/v1/health/checks", timeout=2)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def owners(members: list[ServerProcess]) -> dict[str, list[str]]:
    """Instance id -> the members whose /health/checks list it."""
    found: dict[str, list[str]] = {}
    for member in members:
        for check in checks_of(member)["checks"]:
            found.setdefault(check["id"], []).append(member.name)
    return found


def statuses(member: ServerProcess) -> dict[str, str] | None:
    """Every web instance's stored status (and why) as `member` sees it (stale: no leader
    needed); None while it cannot answer (mid-election)."""
    try:
        r = member.get("/api/v1/services/web/instances", params={"consistency": "stale"}, timeout=2)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return {
        i["id"]: f"{i['health']['status']} ({i['health']['reason']})" for i in r.json()["instances"]
    }


def settled(members: list[ServerProcess], ids: list[str]) -> dict[str, str] | None:
    """Each id owned by exactly one of `members`, all agreeing on the roster and with the
    owner the hash names; the owner map, else None."""
    names = sorted(m.name for m in members)
    if any(checks_of(m)["checkers"] != names for m in members):
        return None
    found = owners(members)
    if sorted(found) != sorted(ids) or any(len(who) != 1 for who in found.values()):
        return None
    owner = {iid: who[0] for iid, who in found.items()}
    assert all(owner[i] == check_owner(instance_key("web", i), names) for i in ids), owner
    return owner


def assert_all_passing(members: list[ServerProcess], ids: list[str], but: str = "") -> int:
    """No instance except `but` is anything but passing, on any member that answers."""
    views = 0
    for member in members:
        seen = statuses(member)
        if seen is None:
            continue
        views += 1
        bad = {i: s for i, s in seen.items() if i != but and not s.startswith("passing")}
        assert not bad, f"{member.name} shows healthy instances as not passing: {bad}"
        assert sorted(seen) == sorted(ids), seen
    return views


def start(
    cluster: LocalCluster, services: dict[str, HttpService]
) -> tuple[list[str], dict[str, str]]:
    """Register the instances (each its own HTTP service) and wait until ownership settles."""
    leader = cluster.leader()
    # Followers forward status writes to the leader's advertised address.
    wait_for(
        lambda: all(m["client_url"] for m in leader.get("/api/v1/cluster").json()["members"]),
        15,
        what="every member's address in the store",
    )
    ids = instance_ids()
    for iid in ids:
        services[iid] = HttpService()
        body = {"address": "127.0.0.1", "port": services[iid].port, "check": CHECK}
        r = leader.request("PUT", f"/api/v1/services/web/instances/{iid}", json=body)
        assert r.status_code == 200, r.text
    members = cluster.live()
    owner = wait_for(lambda: settled(members, ids), 15, what="ownership to settle")
    assert set(owner.values()) == set(MEMBERS), owner  # spread: every member checks some
    # Every owner has really probed its instances (and all are passing).
    wait_for(
        lambda: all(
            c["probes"] >= 2 and c["last"]["ok"] for m in members for c in checks_of(m)["checks"]
        ),
        10,
        what="every owner to have probed its checks",
    )
    assert assert_all_passing(members, ids) == 3
    return ids, owner


@pytest.mark.parametrize("owner_role", ["follower", "leader"])
def test_killed_check_owner_is_taken_over_without_false_critical(
    tmp_path: Path, services: dict[str, HttpService], owner_role: str
) -> None:
    with local_cluster(tmp_path, 3) as cluster:
        ids, owner = start(cluster, services)
        leader = cluster.leader()
        victim = (
            leader if owner_role == "leader" else next(p for p in cluster.live() if p != leader)
        )
        target = next(i for i in ids if owner[i] == victim.name)
        survivors = [p for p in cluster.live() if p is not victim]

        killed = time.monotonic()
        victim.kill()

        def taken_over() -> float | None:
            # Meanwhile nothing healthy may turn critical (or anything else).
            assert_all_passing(survivors, ids)
            found = owners(survivors)
            return time.monotonic() if len(found.get(target, [])) == 1 else None

        takeover = wait_for(taken_over, 15, interval=0.1, what=f"{target} taken over") - killed
        new_owner = settled_owner = wait_for(
            lambda: settled(survivors, ids), 10, what="ownership to settle among survivors"
        )[target]
        assert settled_owner != victim.name
        # The new owner keeps it passing for several check intervals (fall=2 at 250ms).
        new = cluster.members[new_owner]
        first_probes = next(c for c in checks_of(new)["checks"] if c["id"] == target)["probes"]
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            assert_all_passing(survivors, ids)
            time.sleep(0.1)  # a sample rate, not a wait for a condition
        check = next(c for c in checks_of(new)["checks"] if c["id"] == target)
        assert check["probes"] > first_probes and check["last"]["ok"], check
        assert check["status"] == check["stored_status"] == "passing"

        # Now the service dies: only the new owner's probes can notice.
        down = time.monotonic()
        services[target].stop()

        def critical() -> float | None:
            for member in survivors:
                seen = statuses(member)
                if seen is not None and seen.get(target, "").startswith("critical"):
                    return time.monotonic()
            return None

        detected = wait_for(critical, 10, interval=0.02, what=f"{target} critical") - down
        print(
            f"\n{owner_role} owner killed: check taken over after {takeover:.2f}s; "
            f"dead service critical {detected:.2f}s after it stopped"
        )
        for member in survivors:  # every survivor learns it, the others stay passing

            def is_critical(m: ServerProcess = member) -> bool:
                return (statuses(m) or {}).get(target, "").startswith("critical")

            wait_for(is_critical, 5, what=f"{member.name} to see {target} critical")
            assert_all_passing([member], ids, but=target)
        assert owners(survivors)[target] == [new_owner]
        reason = next(
            i["health"]["reason"]
            for i in new.get("/api/v1/services/web/instances").json()["instances"]
            if i["id"] == target
        )
        assert "GET /healthz" in reason, reason

        # The killed member comes back: the leader re-adds it to the roster and its checks
        # move back to it, each starting from the stored status (the dead service stays
        # critical, every other instance stays passing).
        victim.start()
        victim.wait_healthy()
        everyone = cluster.live()
        back = wait_for(lambda: settled(everyone, ids), 15, what="the member back in the roster")
        assert back == owner
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            assert_all_passing(everyone, ids, but=target)
            assert all((statuses(m) or {target: "critical"})[target].startswith("critical")
                       for m in everyone)  # fmt: skip
            time.sleep(0.1)  # a sample rate, not a wait for a condition
        gauge = next(
            line for line in new.get("/metrics").text.splitlines()
            if line.startswith("shoal_health_checks_owned ")
        )  # fmt: skip
        assert float(gauge.split()[1]) == checks_of(new)["count"] >= 1, gauge


def test_single_member_owns_every_check_without_a_roster(
    server: ServerProcess, services: dict[str, HttpService]
) -> None:
    """A cluster of one writes no roster: its leader checks everything, as before."""
    services["s1"] = HttpService()
    body = {"address": "127.0.0.1", "port": services["s1"].port, "check": CHECK}
    assert server.request("PUT", "/api/v1/services/web/instances/s1", json=body).status_code == 200
    mine = wait_for(lambda: checks_of(server) if checks_of(server)["count"] == 1 else None, 5)
    assert mine["checkers"] is None and mine["member"] == "n1"
    assert [c["id"] for c in mine["checks"]] == ["s1"]
    internal = server.get("/api/v1/kv", params={"prefix": "/_shoal/"}).json()["kvs"]
    assert [kv["key"] for kv in internal] == ["/_shoal/members/n1"]
