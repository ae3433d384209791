"""Membership changes that would strand the quorum are refused, and `--force-new-cluster`
is the way out when the quorum is lost anyway (issue 17, item 2), on real members."""

from __future__ import annotations

from pathlib import Path

from shoal.testing import ServerProcess, free_port, local_cluster, wait_for


def test_a_voter_at_an_unreachable_address_cannot_stop_a_cluster_of_one(
    server: ServerProcess,
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    r = server.request(
        "POST",
        "/api/v1/cluster/members",
        json={"name": "n2", "peer_addr": nowhere, "learner": False},
    )
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "rejected" and "learner first" in r.json()["message"], r.text
    # The cluster still commits, and still after a restart.
    assert server.request("PUT", "/api/v1/kv/k", json={"value": "1"}).status_code == 200
    status = server.get("/api/v1/cluster").json()
    assert [m["name"] for m in status["members"]] == ["n1"]
    server.kill()
    server.start().wait_ready()
    assert server.request("PUT", "/api/v1/kv/k", json={"value": "2"}).status_code == 200

    # Removing the only voter is refused too; a learner may come and go freely.
    r = server.request("DELETE", "/api/v1/cluster/members/n1")
    assert r.status_code == 409 and "without a voter" in r.json()["message"], r.text
    r = server.request("POST", "/api/v1/cluster/members", json={"name": "l1", "peer_addr": nowhere})
    assert r.status_code == 200, r.text
    r = server.request("POST", "/api/v1/cluster/members/l1/promote")
    assert r.status_code == 409, r.text  # never heard from (and not caught up)
    wait_for(
        lambda: server.request("DELETE", "/api/v1/cluster/members/l1").status_code == 200,
        10,
        what="the learner removed",
    )
    assert server.request("PUT", "/api/v1/kv/k", json={"value": "3"}).status_code == 200


def test_force_new_cluster_recovers_a_member_whose_quorum_is_gone(tmp_path: Path) -> None:
    with local_cluster(tmp_path, 3) as cluster:
        leader = cluster.leader()
        for i in range(20):
            r = leader.request("PUT", f"/api/v1/kv/keep/{i}", json={"value": str(i)})
            assert r.status_code == 200, r.text
        survivor = next(p for p in cluster.members.values() if p is not leader)
        wait_for(
            lambda: (
                survivor.get("/api/v1/kv/keep/19", params={"consistency": "stale"}).status_code
                == 200
            ),
            what="the survivor to hold every write",
        )
        # Removing a live voter while another is down would strand the quorum: refused.
        lost = next(p for p in cluster.members.values() if p not in (leader, survivor))

        def roster() -> set[str]:  # the leader's voters heard within 2 election timeouts
            return set(leader.get("/api/v1/health/checks").json()["checkers"] or [])

        wait_for(lambda: roster() == set(cluster.members), 20, what="the first roster")
        lost.kill()
        wait_for(lambda: lost.name not in roster(), 20, what=f"{lost.name} noticed gone")
        r = leader.request("DELETE", f"/api/v1/cluster/members/{survivor.name}", timeout=10)
        assert r.status_code == 409 and lost.name in r.json()["message"], r.text

        leader.kill()  # now the majority is gone for good
        r = survivor.request("PUT", "/api/v1/kv/x", json={"value": "v"}, timeout=15)
        assert r.status_code == 503, r.text

        survivor.kill()
        survivor.extra.append("--force-new-cluster")
        survivor.start().wait_ready()
        assert "--force-new-cluster" in survivor.log()
        status = survivor.get("/api/v1/cluster").json()
        assert status["leader"] == survivor.name
        assert [m["name"] for m in status["members"]] == [survivor.name]
        page = survivor.get("/api/v1/kv", params={"prefix": "keep/"}).json()
        assert len(page["kvs"]) == 20
        assert survivor.request("PUT", "/api/v1/kv/x", json={"value": "v"}).status_code == 200

        # Restarted without the flag it stays a healthy cluster of one.
        survivor.kill()
        survivor.extra.remove("--force-new-cluster")
        survivor.start().wait_ready()
        assert survivor.request("PUT", "/api/v1/kv/y", json={"value": "v"}).status_code == 200
        assert survivor.get("/api/v1/kv/keep/0").json()["value"] == "0"
