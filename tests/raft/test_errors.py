"""The driving contract and request errors (rawnode.py; errors.py)."""

from __future__ import annotations

import pytest

from shoal.raft.errors import NotLeader, ProposalRejected, UsageError
from shoal.raft.types import ConfChangeOp

from .harness import Cluster


def test_3_3_propose_on_follower_raises_not_leader_with_hint() -> None:
    """Thesis 3.3 (clients talk to the leader; 6.2 redirection): a follower refuses a
    proposal with NotLeader naming the leader it knows, or None before any is known."""
    c = Cluster(3)
    with pytest.raises(NotLeader) as before:
        c.node("n2").propose(b"x")
    assert before.value.leader_hint is None
    c.elect("n1")
    for member in ("n2", "n3"):
        with pytest.raises(NotLeader) as info:
            c.node(member).propose(b"x")
        assert info.value.leader_hint == "n1"
        assert isinstance(info.value, ProposalRejected)
        with pytest.raises(NotLeader):
            c.node(member).propose_conf_change(ConfChangeOp.REMOVE, "n3")
    with pytest.raises(NotLeader) as no_leader:
        c.add_empty("n9").read_index(b"r")
    assert no_leader.value.leader_hint is None


def test_10_2_ready_twice_without_advance_is_usage_error() -> None:
    """Thesis 10.2 (the driver loop; RawNode contract): ready() may not be called again before
    advance(), and advance() takes only the Ready just returned."""
    c = Cluster(1)
    node = c.node("n1")
    node.campaign()
    rd = node.ready()
    with pytest.raises(UsageError):
        node.ready()
    c.handle("n1", rd)
    with pytest.raises(UsageError):
        node.advance(rd)  # already advanced
    node.propose(b"x")
    rd2 = node.ready()
    with pytest.raises(UsageError):
        node.advance(rd)  # a stale Ready
    node.advance(rd2)


def test_3_3_empty_batch_is_rejected() -> None:
    """Thesis 3.3: a leader refuses an empty batch rather than appending nothing."""
    c = Cluster(1)
    c.elect("n1")
    with pytest.raises(ProposalRejected, match="nothing to propose"):
        c.node("n1").propose_many([])
