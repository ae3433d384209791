"""Leadership transfer: thesis 3.10."""

from __future__ import annotations

import pytest

from shoal.raft.errors import NotLeader, ProposalRejected, TransferInProgress
from shoal.raft.messages import AppendEntries, RequestVote, TimeoutNow
from shoal.raft.types import Role

from .harness import Cluster


def test_3_10_transfer_to_caught_up_target_sends_timeout_now() -> None:
    """Thesis 3.10: with the target's log already up to date, the leader sends TimeoutNow
    at once; the target campaigns without waiting (and without PreVote, its RequestVote
    marked as a transfer so followers in a lease honour it) and leads the next term."""
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose(b"a")
    c.stabilize()
    term = c.node("n1").term
    sent_before = len(c.sent)
    c.node("n1").transfer_leadership("n2")
    assert c.node("n1").transferee == "n2"
    c.stabilize()
    new = c.sent[sent_before:]
    assert [(m.src, m.dst) for m in new if isinstance(m, TimeoutNow)] == [("n1", "n2")]
    votes = [m for m in new if isinstance(m, RequestVote) and m.src == "n2"]
    assert votes and all(m.transfer and not m.pre for m in votes)
    assert c.leaders() == ["n2"]
    assert c.node("n2").term == term + 1
    assert c.node("n1").role is Role.FOLLOWER and c.node("n1").leader == "n2"
    assert c.node("n1").transferee is None
    assert c.values("n2") == [b"a"]


def test_3_10_transfer_to_lagging_target_first_catches_it_up() -> None:
    """Thesis 3.10: when the target lacks entries, the leader first replicates them to it
    and sends TimeoutNow only once it is caught up; meanwhile proposals are refused with
    TransferInProgress."""
    c = Cluster(3)
    c.elect("n1")
    c.crash("n3")
    c.node("n1").propose_many([b"a", b"b", b"c"])
    c.stabilize()
    c.restart("n3")
    assert c.node("n3").status().last_index < c.node("n1").status().last_index
    sent_before = len(c.sent)
    c.node("n1").transfer_leadership("n3")
    with pytest.raises(TransferInProgress) as info:
        c.node("n1").propose(b"during")
    assert info.value.transferee == "n3"
    first = c.node("n1").ready()
    assert any(isinstance(m, AppendEntries) and m.dst == "n3" for m in first.messages)
    assert not any(isinstance(m, TimeoutNow) for m in first.messages)
    c.handle("n1", first)
    c.stabilize()
    new = c.sent[sent_before:]
    timeout_at = [i for i, m in enumerate(new) if isinstance(m, TimeoutNow)]
    appends_at = [
        i for i, m in enumerate(new) if isinstance(m, AppendEntries) and m.dst == "n3" and m.entries
    ]
    assert len(timeout_at) == 1 and appends_at and max(appends_at) < timeout_at[0]
    assert c.leaders() == ["n3"]
    assert c.values("n3") == [b"a", b"b", b"c"]


def test_3_10_transfer_to_unreachable_target_is_abandoned_after_election_timeout() -> None:
    """Thesis 3.10: a transfer that does not complete within an election timeout is
    abandoned: the old leader stays leader of its term and accepts proposals again."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    term = c.node("n1").term
    c.isolate("n3")
    c.node("n1").transfer_leadership("n3")
    for _ in range(9):
        c.run(1, ["n1", "n2"])
        with pytest.raises(TransferInProgress):
            c.node("n1").propose(b"too-early")
    c.run(1, ["n1", "n2"])
    assert c.node("n1").transferee is None
    index = c.node("n1").propose(b"resumed")
    c.stabilize()
    assert c.node("n1").role is Role.LEADER and c.node("n1").term == term
    assert c.commit("n2") == index
    assert c.values("n2") == [b"resumed"]


def test_3_10_transfer_requests_validated() -> None:
    """Thesis 3.10: only a leader transfers, and only to a voter."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    with pytest.raises(NotLeader) as info:
        c.node("n2").transfer_leadership("n3")
    assert info.value.leader_hint == "n1"
    with pytest.raises(ProposalRejected, match="not a voter"):
        c.node("n1").transfer_leadership("n9")
    c.node("n1").transfer_leadership("n1")  # to itself: nothing to do
    assert c.node("n1").transferee is None
