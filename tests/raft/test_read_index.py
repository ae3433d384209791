"""Linearizable reads without log writes: thesis 6.4 (ReadIndex)."""

from __future__ import annotations

from shoal.raft.messages import (
    AppendEntries,
    Heartbeat,
    HeartbeatResponse,
    ReadIndexRequest,
    ReadIndexResponse,
)
from shoal.raft.sim.bugs import inject
from shoal.raft.types import ReadState, Role

from .harness import Cluster


def test_6_4_leader_read_released_only_after_heartbeat_quorum() -> None:
    """Thesis 6.4: the leader records its commit index as the read index, confirms it is
    still leader with a round of heartbeats, and releases the read only once a majority
    (itself and one follower of three) answered that round."""
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose_many([b"a", b"b"])
    c.stabilize()
    commit = c.commit("n1")
    c.node("n1").read_index(b"r1")
    c.flush()
    assert c.read_states["n1"] == []
    beats = [m for m in c.queue if isinstance(m, Heartbeat)]
    assert {m.dst for m in beats} == {"n2", "n3"} and all(m.read_seq > 0 for m in beats)
    c.deliver(lambda m: isinstance(m, Heartbeat))
    c.flush()
    assert c.read_states["n1"] == []  # responses queued, not yet delivered
    c.deliver(lambda m: isinstance(m, HeartbeatResponse) and m.src == "n2")
    c.flush()
    assert c.read_states["n1"] == [ReadState(commit, b"r1")]
    c.stabilize()
    assert c.read_states["n1"] == [ReadState(commit, b"r1")]  # released once only


def test_6_4_new_leader_defers_reads_until_its_noop_commits() -> None:
    """Thesis 6.4: a new leader does not know the latest commit index until an entry of
    its own term commits, so it holds reads until its no-op is committed, then serves
    them at (at least) the no-op's index."""
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose(b"a")
    c.stabilize()
    c.crash("n1")
    with c.dropping(lambda m: isinstance(m, AppendEntries) and m.src == "n2"):
        c.elect("n2")
        noop = c.node("n2").status().last_index
        assert c.commit("n2") < noop
        c.node("n2").read_index(b"early")
        c.stabilize()
        c.run(3, ["n2", "n3"])  # heartbeats are answered, but the no-op cannot commit
        assert c.read_states["n2"] == []
    c.run(1, ["n2", "n3"])
    assert c.commit("n2") == noop
    assert c.read_states["n2"] == [ReadState(noop, b"early")]


def test_6_4_follower_read_goes_through_leader() -> None:
    """Thesis 6.4: a follower asks the leader for a read index (ReadIndexRequest); the
    leader confirms leadership and answers; the follower's ReadState carries an index at
    least the commit index at the time of the request."""
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose_many([b"a", b"b", b"c"])
    c.stabilize()
    commit_at_request = c.commit("n1")
    c.node("n2").read_index(b"f1")
    c.stabilize()
    assert [(m.src, m.dst, m.context) for m in c.sent_of(ReadIndexRequest)] == [("n2", "n1", b"f1")]
    responses = c.sent_of(ReadIndexResponse)
    assert [(m.src, m.dst) for m in responses] == [("n1", "n2")]
    assert len(c.read_states["n2"]) == 1
    state = c.read_states["n2"][0]
    assert state.context == b"f1" and state.index >= commit_at_request
    assert c.applied_index["n2"] >= state.index  # the follower can serve it right away
    assert c.read_states["n1"] == []


def test_6_4_partitioned_leader_never_confirms_read() -> None:
    """Thesis 6.4: a leader cut off from the majority cannot complete a heartbeat round,
    so it never releases a read (and drops it when it steps down), even while a new
    leader commits writes it cannot see."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    c.isolate("n1")
    c.node("n1").read_index(b"stale?")
    c.elect("n2")
    c.node("n2").propose(b"newer")
    c.stabilize()
    for _ in range(30):
        c.run(1)
    assert c.node("n1").role is Role.FOLLOWER
    assert c.read_states["n1"] == []


def test_6_4_injected_read_without_quorum_serves_stale_read() -> None:
    """Thesis 6.4, negative control: with "read-without-quorum" injected, the partitioned
    old leader serves a read at an index below a write the new leader already committed
    (a stale, non-linearizable read), which the test above rules out."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    c.isolate("n1")
    c.elect("n2")
    write = c.node("n2").propose(b"newer")
    c.stabilize()
    assert c.commit("n2") == write
    with inject("read-without-quorum"):
        c.node("n1").read_index(b"stale")
        c.flush()
    assert len(c.read_states["n1"]) == 1
    assert c.read_states["n1"][0].index < write


def test_6_4_single_member_read_is_confirmed_at_once() -> None:
    """Thesis 6.4: a one-member leader is its own quorum: once its no-op commits, a read
    is released without any messages."""
    c = Cluster(1)
    c.elect("n1")
    c.stabilize()
    index = c.node("n1").propose(b"x")
    c.stabilize()
    c.node("n1").read_index(b"solo")
    c.flush()
    assert c.read_states["n1"] == [ReadState(index, b"solo")]
    assert c.sent == []
