"""Membership changes: thesis 4.1 (single-server changes), 4.2.1 (catching up new servers,
as non-voting learners) and 4.2.2 (removing the current leader)."""

from __future__ import annotations

import pytest

from shoal.raft.errors import ConfChangeRejected
from shoal.raft.messages import AppendEntries, RequestVote
from shoal.raft.types import ConfChangeOp, Role

from .harness import Cluster


def _with_learner() -> Cluster:
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose_many([b"a", b"b"])
    c.stabilize()
    learner = c.add_empty("n4")
    assert learner.conf.members == frozenset()
    index = c.node("n1").propose_conf_change(ConfChangeOp.ADD_LEARNER, "n4")
    assert index == 4
    c.stabilize()
    c.run(1)
    return c


def test_4_2_1_learner_receives_log_but_never_campaigns() -> None:
    """Thesis 4.2.1: a new server joins as a non-voting member; it receives the whole log
    from an empty start, learns the configuration from it, and never campaigns."""
    c = _with_learner()
    for member in c.ids:
        conf = c.node(member).conf
        assert conf.voters == frozenset({"n1", "n2", "n3"})
        assert conf.learners == frozenset({"n4"})
    assert c.log("n4") == c.log("n1")
    assert c.commit("n4") == 4
    assert c.values("n4") == [b"a", b"b"]
    c.isolate("n4")  # cut off from its leader, a voter would campaign; a learner may not
    c.run(60, ["n4"])
    assert c.node("n4").role is Role.FOLLOWER
    assert not c.sent_of(RequestVote, src="n4")
    assert c.node("n4").term == c.node("n1").term


def test_4_1_learner_not_counted_in_quorum() -> None:
    """Thesis 4.1/4.2.1: a learner is not part of any majority: with a voter and the
    learner both down, the other two voters (2 of 3) still commit."""
    c = _with_learner()
    c.crash("n3")
    c.crash("n4")
    index = c.node("n1").propose(b"c")
    c.stabilize()
    assert c.commit("n1") == index
    assert c.values("n2") == [b"a", b"b", b"c"]


def test_4_2_1_promoting_lagging_learner_rejected_until_caught_up() -> None:
    """Thesis 4.2.1: a learner becomes a voter only once it has caught up; promoting one
    that is behind is refused (ConfChangeRejected), and accepted after it catches up."""
    c = _with_learner()
    c.crash("n4")
    c.node("n1").propose_many([b"c", b"d"])
    c.stabilize()
    with pytest.raises(ConfChangeRejected, match="not caught up"):
        c.node("n1").propose_conf_change(ConfChangeOp.ADD_VOTER, "n4")
    c.restart("n4")
    c.run(1)
    assert c.log("n4") == c.log("n1")
    index = c.node("n1").propose_conf_change(ConfChangeOp.ADD_VOTER, "n4")
    c.stabilize()
    for member in c.ids:
        conf = c.node(member).conf
        assert conf.voters == frozenset({"n1", "n2", "n3", "n4"}) and not conf.learners
        assert c.commit(member) == index
    # Now it counts: with two of four voters down, nothing commits.
    c.crash("n3")
    c.crash("n4")
    stuck = c.node("n1").propose(b"e")
    c.stabilize()
    assert c.commit("n1") == stuck - 1


def test_4_1_second_change_while_one_is_uncommitted_is_rejected() -> None:
    """Thesis 4.1: only one configuration change may be outstanding at a time."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    c.add_empty("n4")
    first = c.node("n1").propose_conf_change(ConfChangeOp.ADD_LEARNER, "n4")
    with pytest.raises(ConfChangeRejected, match=f"change at index {first} is not committed"):
        c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n3")
    # The configuration is in force as soon as it is in the leader's log (4.1).
    assert c.node("n1").conf.learners == frozenset({"n4"})
    c.stabilize()
    c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n3")  # now allowed
    c.stabilize()
    assert c.node("n2").conf.voters == frozenset({"n1", "n2"})


def test_4_1_remove_voter_shrinks_quorum() -> None:
    """Thesis 4.1: removing a voter drops it from every member's configuration and from
    the leader's progress; the remaining two voters form the new majority."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    index = c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n3")
    c.stabilize()
    for member in ("n1", "n2"):
        assert c.node(member).conf.voters == frozenset({"n1", "n2"})
        assert c.commit(member) == index
    assert set(c.node("n1").status().progress) == {"n1", "n2"}
    c.crash("n3")
    more = c.node("n1").propose(b"after-removal")
    c.stabilize()
    assert c.commit("n2") == more


def test_4_2_2_removed_leader_steps_down_after_commit_and_others_elect() -> None:
    """Thesis 4.2.2: a leader that removes itself keeps leading until the change commits
    (without counting itself), then steps down; the remaining voters elect a leader and
    the removed member never campaigns again."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    index = c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n1")
    assert c.node("n1").role is Role.LEADER  # still leading, change not committed
    c.stabilize()
    assert c.node("n1").role is Role.FOLLOWER
    assert c.commit("n2") == index and c.commit("n3") == index
    assert c.node("n2").conf.voters == frozenset({"n2", "n3"})
    old_term = c.node("n1").term
    elections_before = len(c.sent_of(RequestVote, src="n1"))
    for _ in range(60):
        c.run(1)
        if c.leader() is not None:
            break
    new = c.leader()
    assert new in ("n2", "n3")
    assert c.node(new).term > old_term
    c.run(40)
    assert len(c.sent_of(RequestVote, src="n1")) == elections_before  # it never campaigned
    assert c.node("n1").role is Role.FOLLOWER
    value = c.node(new).propose(b"x")
    c.stabilize()
    other = "n3" if new == "n2" else "n2"
    assert c.commit(other) == value


def test_4_1_change_that_leaves_no_voter_is_rejected() -> None:
    """Thesis 4.1: a configuration needs at least one voter; removing the last is refused,
    as are changes that would not change anything."""
    c = Cluster(1)
    c.elect("n1")
    c.stabilize()
    with pytest.raises(ConfChangeRejected, match="no voters"):
        c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n1")
    with pytest.raises(ConfChangeRejected, match="already a voter"):
        c.node("n1").propose_conf_change(ConfChangeOp.ADD_VOTER, "n1")
    with pytest.raises(ConfChangeRejected, match="not a member"):
        c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n7")


def test_4_1_new_leader_refuses_change_before_committing_in_its_term() -> None:
    """Thesis 4.1 (the 2015 single-server change fix): a leader proposes no change before
    an entry of its own term is committed."""
    c = Cluster(3)
    with c.dropping(lambda m: isinstance(m, AppendEntries)):
        c.elect("n1")
        with pytest.raises(ConfChangeRejected, match="not yet committed an entry in its term"):
            c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n3")
    c.run(1)
    c.node("n1").propose_conf_change(ConfChangeOp.REMOVE, "n3")
