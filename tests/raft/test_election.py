"""Elections: thesis 3.4 (leader election), 3.6.1 (election restriction), 4.2.3 and 9.6
(PreVote, disruptive servers) and 6.2 (CheckQuorum)."""

from __future__ import annotations

from shoal.raft.messages import AppendEntries, RequestVote, VoteResponse
from shoal.raft.options import RaftConfig
from shoal.raft.sim.bugs import inject
from shoal.raft.types import Role

from .harness import Cluster


def test_3_4_ticking_elects_exactly_one_leader_which_commits_a_noop() -> None:
    """Thesis 3.4: followers time out and elect exactly one leader; 3.6.2/6.4: the new
    leader appends an empty entry of its own term and commits it on every member."""
    c = Cluster(3, seed=7)
    for _ in range(40):
        c.run(1)
        if c.leaders():
            break
    leaders = c.leaders()
    assert len(leaders) == 1
    leader = leaders[0]
    term = c.node(leader).term
    assert term == 1  # PreVote spends no term on the way
    c.stabilize()
    for member in c.ids:
        node = c.node(member)
        assert node.term == term
        assert node.leader == leader
        if member != leader:
            assert node.role is Role.FOLLOWER
        assert c.log(member) == [(1, term, b"")]
        assert c.commit(member) == 1
        assert [(e.index, e.term, e.data) for e in c.applied[member]] == [(1, term, b"")]
    # A vote is durable before it is granted: each member persisted a vote in term 1.
    voted = [c.stores[m].hard_state.vote for m in c.ids]
    assert voted.count(leader) >= 2


def test_3_4_campaign_wins_with_majority_and_leader_is_unique_per_term() -> None:
    """Thesis 3.4: a candidate that gets votes from a majority leads its term; the others
    become followers of that term and no second member leads it."""
    c = Cluster(5)
    c.elect("n3")
    assert c.leaders() == ["n3"]
    assert {c.node(m).term for m in c.ids} == {1}
    grants = [
        m for m in c.sent_of(VoteResponse, dst="n3") if m.granted and not m.pre and m.term == 1
    ]
    assert len(grants) >= 2  # with its own vote, a majority of 5


def _leader_then_partial_log(pre_vote: bool) -> Cluster:
    """n1 leads term 1 and commits two writes with n2 while n3 is cut off; then n1 dies."""
    c = Cluster(
        3,
        config=lambda m: RaftConfig(id=m, election_ticks=10, heartbeat_ticks=1, pre_vote=pre_vote),
    )
    c.elect("n1")
    c.isolate("n3")
    c.node("n1").propose(b"a")
    c.node("n1").propose(b"b")
    c.stabilize()
    assert c.commit("n1") == 3 and c.commit("n2") == 3
    assert c.log("n3") == [(1, 1, b"")]
    c.crash("n1")
    c.heal()
    c.expire_leases(["n2", "n3"])
    return c


def test_3_6_1_member_with_stale_log_cannot_win_election() -> None:
    """Thesis 3.6.1: a voter denies its vote to a candidate whose log is less up to date
    than its own, so a member missing committed entries cannot become leader."""
    c = _leader_then_partial_log(pre_vote=False)
    term_before = c.node("n3").term
    c.node("n3").campaign()
    c.stabilize()
    assert c.node("n3").role is not Role.LEADER
    denials = [m for m in c.sent_of(VoteResponse, src="n2", dst="n3") if not m.pre]
    assert denials and not any(m.granted for m in denials)
    assert c.node("n3").term == term_before + 1  # it did campaign (no PreVote here)
    # The up-to-date member wins instead and keeps both committed writes.
    c.elect("n2")
    c.stabilize()
    assert c.values("n2")[-2:] == [b"a", b"b"]
    assert c.values("n3")[-2:] == [b"a", b"b"]


def test_3_6_1_prevote_also_refused_for_stale_log() -> None:
    """Thesis 3.6.1 with 9.6: the PreVote round applies the same log comparison, so the
    stale member does not even raise its term."""
    c = _leader_then_partial_log(pre_vote=True)
    c.node("n3").campaign()
    c.stabilize()
    assert c.node("n3").role is not Role.LEADER
    assert c.node("n3").term == 1
    pre = [m for m in c.sent_of(VoteResponse, src="n2", dst="n3") if m.pre]
    assert pre and not any(m.granted for m in pre)


def test_3_6_1_injected_vote_any_log_lets_stale_member_win() -> None:
    """Thesis 3.6.1, negative control: with the log comparison broken ("vote-any-log"),
    the member missing committed entries wins the election this test forbids above."""
    c = _leader_then_partial_log(pre_vote=False)
    with inject("vote-any-log"):
        c.node("n3").campaign()
        c.flush()
        c.deliver(lambda m: isinstance(m, RequestVote | VoteResponse))
        c.flush()
        c.deliver(lambda m: isinstance(m, RequestVote | VoteResponse))
    assert c.node("n3").role is Role.LEADER
    assert c.log("n3") == [(1, 1, b""), (2, 2, b"")]  # lacks committed a and b


def test_9_6_prevote_partitioned_follower_keeps_term_and_does_not_disrupt() -> None:
    """Thesis 9.6 (and 4.2.3): a follower cut off from the cluster keeps timing out, but
    its PreVotes fail, so its term never rises; when it rejoins, the leader and the term
    stay as they were."""
    c = Cluster(3)
    c.elect("n1")
    term = c.node("n1").term
    c.isolate("n3")
    c.run(100)
    assert c.node("n3").term == term
    assert c.node("n3").role in (Role.FOLLOWER, Role.PRE_CANDIDATE)
    assert c.sent_of(RequestVote, src="n3"), "the isolated follower should have tried"
    assert all(m.pre for m in c.sent_of(RequestVote, src="n3"))
    c.node("n1").propose(b"while-away")
    c.heal()
    c.run(5)
    assert c.leaders() == ["n1"]
    assert {c.node(m).term for m in c.ids} == {term}
    assert c.node("n3").role is Role.FOLLOWER and c.node("n3").leader == "n1"
    assert c.log("n3") == c.log("n1")
    assert c.values("n3") == [b"while-away"]


def test_9_6_without_prevote_partitioned_follower_disrupts_on_rejoin() -> None:
    """Thesis 9.6, the problem PreVote solves: without it, the cut-off follower raises its
    term on every timeout and, on rejoining, forces the leader out of office."""
    c = Cluster(
        3,
        config=lambda m: RaftConfig(id=m, election_ticks=10, heartbeat_ticks=1, pre_vote=False),
    )
    c.elect("n1")
    term = c.node("n1").term
    c.isolate("n3")
    c.run(100)
    assert c.node("n3").term > term + 3
    c.heal()
    c.run(1)
    assert c.node("n1").role is Role.FOLLOWER
    assert c.node("n1").term == c.node("n3").term


def test_6_2_check_quorum_isolated_leader_steps_down_and_majority_elects() -> None:
    """Thesis 6.2: a leader that hears from no majority for an election timeout steps
    down (within two timeouts of being cut off); the majority side elects a new leader
    of a higher term."""
    c = Cluster(3, seed=3)
    c.elect("n1")
    term = c.node("n1").term
    c.isolate("n1")
    ticks = 0
    while c.node("n1").role is Role.LEADER:
        c.run(1)
        ticks += 1
        assert ticks <= 2 * 10, "isolated leader did not step down within 2 election timeouts"
    assert ticks > 10 - 1  # and not before a whole election timeout passed
    assert c.node("n1").role is Role.FOLLOWER and c.node("n1").term == term
    for _ in range(60):
        if c.leader() in ("n2", "n3"):
            break
        c.run(1)
    new = c.leader()
    assert new in ("n2", "n3")
    assert c.node(new).term > term
    # The old leader, still cut off, never regains office in its old term.
    assert c.node("n1").role is not Role.LEADER


def test_4_2_3_follower_in_lease_ignores_higher_term_vote_request() -> None:
    """Thesis 4.2.3 (with 6.2): a follower that heard from its leader within the minimum
    election timeout ignores a RequestVote, even of a higher term: no term change, no
    vote, no reply. Once the lease lapses, the same request is honoured."""
    c = Cluster(3)
    c.elect("n1")
    term = c.node("n1").term
    last = c.node("n2").status().last_index
    request = RequestVote(
        src="n3", dst="n2", term=term + 5, last_index=last + 10, last_term=term + 4
    )
    c.node("n2").step(request)
    assert c.node("n2").term == term
    assert c.node("n2").leader == "n1"
    assert not c.node("n2").has_ready()
    c.expire_leases(["n2"])
    c.node("n2").step(request)
    c.drain("n2")
    assert c.node("n2").term == term + 5
    assert c.stores["n2"].hard_state.vote == "n3"
    replies = c.sent_of(VoteResponse, src="n2", dst="n3")
    assert replies and replies[-1].granted and replies[-1].term == term + 5
    assert not c.sent_of(AppendEntries, src="n2")


def test_3_8_vote_survives_restart_no_second_vote_in_same_term() -> None:
    """Thesis 3.8: a member persists its vote before granting it, so after a crash and
    restart it still refuses a different candidate in the same term."""
    c = Cluster(
        3,
        config=lambda m: RaftConfig(id=m, election_ticks=10, heartbeat_ticks=1, pre_vote=False),
    )
    c.isolate("n3")
    with c.dropping(lambda m: isinstance(m, AppendEntries)):  # logs stay equal: empty
        c.node("n1").campaign()
        c.stabilize()
    assert c.node("n1").role is Role.LEADER and c.node("n1").term == 1
    assert c.stores["n2"].hard_state.vote == "n1"
    assert c.log("n2") == c.log("n3") == []  # only the vote can tell n3 and n1 apart
    c.crash("n1")
    c.crash("n2")
    c.restart("n2")
    assert c.node("n2").term == 1
    c.heal()
    # n3, still in term 0, now campaigns for term 1: the term n2 already voted in.
    c.node("n3").campaign()
    assert c.node("n3").term == 1
    c.stabilize()
    assert c.node("n3").role is Role.CANDIDATE
    replies = [m for m in c.sent_of(VoteResponse, src="n2", dst="n3") if m.term == 1]
    assert replies and not any(m.granted for m in replies)
    assert c.stores["n2"].hard_state.vote == "n1"


def test_3_8_injected_vote_twice_grants_second_vote_in_same_term() -> None:
    """Thesis 3.8, negative control: with "vote-twice" injected, the same script makes n2
    grant a second vote in term 1, and n3 leads a term that n1 already led."""
    c = Cluster(
        3,
        config=lambda m: RaftConfig(id=m, election_ticks=10, heartbeat_ticks=1, pre_vote=False),
    )
    c.isolate("n3")
    with c.dropping(lambda m: isinstance(m, AppendEntries)):  # logs stay equal: empty
        c.node("n1").campaign()
        c.stabilize()
    c.crash("n1")
    c.crash("n2")
    c.restart("n2")
    c.heal()
    with inject("vote-twice"):
        c.node("n3").campaign()
        c.stabilize()
    assert c.node("n3").role is Role.LEADER and c.node("n3").term == 1  # two leaders of term 1


def test_followers_that_saw_their_leader_s_connection_close_elect_within_two_ticks() -> None:
    """`report_leader_lost` (the driver saw the leader's connection close, as when its
    process dies): the followers stop counting on its lease and one of them leads
    after at most two ticks, not an election timeout."""
    c = Cluster(3, seed=3)
    c.elect("n1")
    c.crash("n1")
    for member in ("n2", "n3"):
        c.node(member).report_leader_lost("n1")
        assert c.node(member).leader is None
    for _ in range(2):
        c.run(1, members=["n2", "n3"])
    leaders = [m for m in ("n2", "n3") if c.node(m).role is Role.LEADER]
    assert len(leaders) == 1, [c.node(m).role for m in ("n2", "n3")]


def test_one_follower_losing_a_live_leader_s_connection_disrupts_nothing() -> None:
    """A hint, not a decision: the other follower is still in the live leader's lease,
    so the PreVote fails and nobody's term moves."""
    c = Cluster(3, seed=3)
    c.elect("n1")
    term = c.node("n1").term
    c.node("n2").report_leader_lost("n1")
    c.run(3)
    assert c.leaders() == ["n1"]
    assert {c.node(m).term for m in c.ids} == {term}
    assert c.node("n2").leader == "n1"  # the next heartbeat told it again


def test_a_leader_lost_report_about_a_non_leader_changes_nothing() -> None:
    c = Cluster(3, seed=3)
    c.elect("n1")
    elapsed = c.node("n2")._raft.election_elapsed
    c.node("n2").report_leader_lost("n3")
    c.node("n1").report_leader_lost("n2")  # a leader ignores it
    assert c.node("n2").leader == "n1"
    assert c.node("n2")._raft.election_elapsed == elapsed
    assert c.leaders() == ["n1"]
