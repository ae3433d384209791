"""Log compaction: thesis 5.1 (snapshotting memory-based state machines) and the
InstallSnapshot RPC that brings a far-behind follower back."""

from __future__ import annotations

from shoal.raft.messages import AppendEntries, InstallSnapshot
from shoal.raft.sim.cluster import decode_state
from shoal.raft.types import ConfChangeOp

from .harness import Cluster


def test_5_1_follower_behind_compacted_log_catches_up_by_snapshot_then_appends() -> None:
    """Thesis 5.1: after the leader compacts its log, a follower that missed the compacted
    entries receives the leader's snapshot (InstallSnapshot), installs it from its Ready,
    and then takes the entries after it through ordinary appends."""
    c = Cluster(3)
    c.elect("n1")
    c.crash("n3")
    c.node("n1").propose_many([b"v%d" % i for i in range(10)])
    c.stabilize()
    assert c.commit("n1") == 11
    snap = c.compact("n1")
    assert (snap.index, snap.term) == (11, 1)
    assert decode_state(snap.data) == [(i + 2, b"v%d" % i) for i in range(10)]
    assert c.node("n1").status().last_index == 11
    assert c.log("n1") == []  # everything is in the snapshot now
    c.node("n1").propose_many([b"after1", b"after2"])
    c.stabilize()
    assert c.commit("n1") == 13
    sent_before = len(c.sent)
    c.restart("n3")
    assert c.log("n3") == [(1, 1, b"")]  # it had only the no-op
    c.run(1)
    c.stabilize()
    snaps = [m for m in c.sent[sent_before:] if isinstance(m, InstallSnapshot)]
    assert [(m.src, m.dst, m.snapshot.index) for m in snaps] == [("n1", "n3", 11)]
    installed = [rd.snapshot for rd in c.readies["n3"] if rd.snapshot is not None]
    assert [s.index for s in installed] == [11]
    assert c.stores["n3"].snapshot.index == 11
    later = [
        m
        for m in c.sent[sent_before:]
        if isinstance(m, AppendEntries) and m.dst == "n3" and m.entries
    ]
    assert later and later[-1].entries[-1].index == 13 and later[0].prev_index >= 11
    assert c.log("n3") == c.log("n1") == [(12, 1, b"after1"), (13, 1, b"after2")]
    assert c.commit("n3") == 13
    assert c.values("n3") == c.values("n1")
    assert c.values("n3") == [b"v%d" % i for i in range(10)] + [b"after1", b"after2"]


def test_5_1_restart_from_snapshot_and_log_rebuilds_state() -> None:
    """Thesis 5.1: a member restarts from its latest snapshot plus the log after it, and
    replays only the committed entries past the snapshot."""
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose_many([b"a", b"b"])
    c.stabilize()
    c.compact("n2")
    c.node("n1").propose(b"c")
    c.stabilize()
    c.crash("n2")
    c.restart("n2")
    assert c.node("n2").snapshot.index == 3
    assert c.log("n2") == [(4, 1, b"c")]
    c.stabilize()
    assert [e.index for e in c.applied["n2"]] == [4]
    assert c.values("n2") == [b"a", b"b", b"c"]


def test_5_1_lost_snapshot_is_sent_again_after_election_timeout() -> None:
    """Thesis 5.1: InstallSnapshot may be lost like any message; the leader offers the
    snapshot again (here after an election timeout's worth of heartbeat replies)."""
    c = Cluster(3)
    c.elect("n1")
    c.crash("n3")
    c.node("n1").propose_many([b"a", b"b", b"c"])
    c.stabilize()
    c.compact("n1")
    c.restart("n3")
    with c.dropping(lambda m: isinstance(m, InstallSnapshot)):
        c.run(3)
    assert len(c.sent_of(InstallSnapshot, dst="n3")) == 1
    assert c.log("n3") == [(1, 1, b"")]
    c.run(12)
    assert len(c.sent_of(InstallSnapshot, dst="n3")) >= 2
    assert c.node("n3").snapshot.index == 4
    assert c.values("n3") == [b"a", b"b", b"c"]


def test_5_1_new_member_joins_compacted_cluster_by_snapshot() -> None:
    """Thesis 5.1 with 4.2.1: an empty member added as a learner after the leader
    compacted its log starts from the snapshot, then learns its own membership from the
    configuration entry that follows it."""
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose_many([b"a", b"b"])
    c.stabilize()
    c.compact("n1")
    c.add_empty("n4")
    change = c.node("n1").propose_conf_change(ConfChangeOp.ADD_LEARNER, "n4")
    c.stabilize()
    c.run(2)
    assert [m.snapshot.index for m in c.sent_of(InstallSnapshot, dst="n4")] == [3]
    assert c.node("n4").conf.learners == frozenset({"n4"})
    assert c.node("n4").conf.voters == frozenset({"n1", "n2", "n3"})
    assert c.commit("n4") == change
    assert c.values("n4") == [b"a", b"b"]
    c.node("n1").propose_conf_change(ConfChangeOp.ADD_VOTER, "n4")
    c.stabilize()
    assert c.node("n4").conf.voters == frozenset({"n1", "n2", "n3", "n4"})
