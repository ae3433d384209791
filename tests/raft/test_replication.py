"""Log replication and commitment: thesis 3.5 (replication, fast backtracking), 3.6.2 and
figure 3.7 (committing entries from previous terms) and 10.2.1 (the leader's own disk
write in parallel with replication)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shoal.raft.messages import (
    AppendEntries,
    AppendResponse,
    Commit,
    Message,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from shoal.raft.options import RaftConfig
from shoal.raft.sim.bugs import inject
from shoal.raft.sim.checker import Violation
from shoal.raft.types import Role

from .harness import Cluster


def test_3_5_replication_makes_logs_identical_and_applies_in_order() -> None:
    """Thesis 3.5: the leader's entries reach every follower in order; once a majority
    stores them they are committed and every member applies the same sequence."""
    c = Cluster(3)
    c.elect("n1")
    first, last = c.node("n1").propose_many([b"a", b"b", b"c"])
    assert (first, last) == (2, 4)
    c.stabilize()
    for member in c.ids:
        assert c.log(member) == [(1, 1, b""), (2, 1, b"a"), (3, 1, b"b"), (4, 1, b"c")]
        assert c.commit(member) == 4
        assert c.values(member) == [b"a", b"b", b"c"]


def test_3_5_fast_backtracking_repairs_long_divergent_tail_in_few_round_trips() -> None:
    """Thesis 3.5 (the "conflicting term" optimisation): a follower holding a long
    uncommitted tail from an old term rejects once, the rejection's hint lets the leader
    skip the whole conflicting term, and the follower's log ends identical to the leader's.
    One-entry-at-a-time backtracking would need one rejection per divergent entry."""
    c = Cluster(3)
    c.elect("n1")
    c.node("n1").propose_many([b"a", b"b"])
    c.stabilize()
    assert c.commit("n3") == 3
    # The old leader, cut off, keeps accepting proposals nobody will ever commit.
    c.isolate("n1")
    stale_first, stale_last = c.node("n1").propose_many([b"stale%d" % i for i in range(30)])
    c.stabilize()
    assert (stale_first, stale_last) == (4, 33)
    # The majority moves on for two terms, writing a long log of its own.
    c.elect("n2")
    assert c.node("n2").term == 2
    c.node("n2").propose_many([b"new%d" % i for i in range(20)])
    c.stabilize()
    assert c.commit("n3") == 24
    c.node("n2").transfer_leadership("n3")
    c.stabilize()
    assert c.leader() == "n3" and c.node("n3").term == 3
    divergent = [e for e in c.log("n1") if e[0] >= 4]
    leader_tail = [e for e in c.log("n3") if e[0] >= 4]
    assert len(divergent) == 30 and all(t == 1 for _, t, _ in divergent)
    assert len(leader_tail) == 22 and all(t in (2, 3) for _, t, _ in leader_tail)
    # Rejoin.
    sent_before = len(c.sent)
    c.heal()
    c.run(1)
    c.stabilize()
    rejections = [
        m
        for m in c.sent[sent_before:]
        if isinstance(m, AppendResponse) and m.reject and m.src == "n1" and m.dst == "n3"
    ]
    assert 1 <= len(rejections) <= 2, rejections
    assert rejections[0].hint_term == 1
    assert c.log("n1") == c.log("n3")
    assert c.commit("n1") == c.commit("n3") == 25
    assert c.values("n1") == [b"a", b"b"] + [b"new%d" % i for i in range(20)]
    assert c.node("n1").role is Role.FOLLOWER and c.node("n1").leader == "n3"


# -- figure 3.7 ---------------------------------------------------------------------------


def _one_entry_per_append(member: str) -> RaftConfig:
    # Every AppendEntries carries exactly one entry, so filters can pick entries apart.
    return RaftConfig(id=member, election_ticks=10, heartbeat_ticks=1, max_msg_bytes=1)


def _appends(src: str, dsts: tuple[str, ...], min_prev: int = 0) -> Callable[[Message], bool]:
    """AppendEntries carrying entries from `src` to `dsts`, with prev_index >= min_prev."""

    def match(m: Message) -> bool:
        return (
            isinstance(m, AppendEntries)
            and m.src == src
            and m.dst in dsts
            and bool(m.entries)
            and m.prev_index >= min_prev
        )

    return match


def _figure_3_7_until_s1_replicates_old_entry() -> Cluster:
    """Figure 3.7 (figure 8 of the Raft paper), with S1..S5 as n1..n5, through step (c).

    (a) S1 leads, writes x at index 2 and replicates it to S2 only, then crashes.
    (b) S5 leads a later term with the votes of S3, S4 and itself, appends a different
        entry at index 2 (its no-op) and y at 3, and crashes before replicating either.
    (c) S1 restarts and leads a still later term; it replicates its old x at index 2 to
        S3, so a majority (S1, S2, S3) stores it, but its new no-op at index 3 reaches S2
        only.
    """
    c = Cluster(5, config=_one_entry_per_append)
    c.elect("n1")  # index 1: n1's no-op, committed everywhere
    assert all(c.commit(m) == 1 for m in c.ids)
    # (a)
    with c.dropping(_appends("n1", ("n3", "n4", "n5"))):
        assert c.node("n1").propose(b"x") == 2
        c.stabilize()
    s1_term = c.node("n1").term
    assert c.log("n2") == [(1, 1, b""), (2, s1_term, b"x")]
    assert c.log("n3") == [(1, 1, b"")]
    assert c.commit("n1") == 1
    c.crash("n1")
    # (b)
    c.isolate("n2")
    with c.dropping(_appends("n5", ("n1", "n2", "n3", "n4"))):
        c.elect("n5")
        s5_term = c.node("n5").term
        assert s5_term > s1_term
        assert c.node("n5").propose(b"y") == 3
        c.stabilize()
    assert [(i, t) for i, t, _ in c.log("n5")] == [(1, 1), (2, s5_term), (3, s5_term)]
    assert c.log("n3") == [(1, 1, b"")] and c.log("n4") == [(1, 1, b"")]
    c.crash("n5")
    c.heal()
    # (c)
    c.restart("n1")

    # S3 sees the probe that it rejects (it lacks index 2) and then the old entry, but no
    # append that it would accept and that hands it index 3, the new no-op. S4 gets no
    # entries at all.
    def noop_to_s3(m: Message) -> bool:
        return _appends("n1", ("n3",), min_prev=2)(m) and c.node("n3").status().last_index >= 2

    c.drop(noop_to_s3)
    c.drop(_appends("n1", ("n4",)))
    c.elect("n1")
    s1_new_term = c.node("n1").term
    assert s1_new_term > s5_term
    c.stabilize()
    old = (2, s1_term, b"x")
    assert c.log("n1") == [(1, 1, b""), old, (3, s1_new_term, b"")]
    assert c.log("n2") == c.log("n1")
    assert c.log("n3") == [(1, 1, b""), old]  # the old entry, not the new no-op
    assert c.log("n4") == [(1, 1, b"")]
    progress = c.node("n1").status().progress
    assert progress["n2"].match == 3 and progress["n3"].match == 2
    return c


def test_3_6_2_figure_3_7_leader_does_not_commit_old_term_entry_by_counting() -> None:
    """Thesis 3.6.2 / figure 3.7: an entry from an earlier term stored on a majority is
    still not committed by counting replicas; it commits only once an entry of the
    leader's own term (here its no-op) is on a majority, which commits both."""
    c = _figure_3_7_until_s1_replicates_old_entry()
    assert c.commit("n1") == 1  # index 2 is on 3 of 5, but it is of an old term
    assert all(c.commit(m) == 1 for m in ("n1", "n2", "n3"))
    assert [e.index for e in c.applied["n1"]] == [1]
    # Let the no-op reach S3: now the leader's own term is on a majority.
    c.filters.clear()
    c.run(1)
    assert c.commit("n1") == 3
    c.run(1)
    assert all(c.commit(m) == 3 for m in ("n1", "n2", "n3", "n4"))
    assert c.values("n1") == c.values("n3") == [b"x"]


def test_3_6_2_figure_3_7_safe_core_lets_s5_overwrite_uncommitted_entry() -> None:
    """Thesis 3.6.2 / figure 3.7 (d)/(e): because the correct leader did not commit x,
    S5 may still win and overwrite it — which is safe, since nobody applied x."""
    c = _figure_3_7_until_s1_replicates_old_entry()
    c.filters.clear()
    c.crash("n1")
    c.restart("n5")
    c.elect("n5")
    c.stabilize()
    c.run(2)
    s5_log = c.log("n5")
    assert s5_log[1][2] == b"" and s5_log[2][2] == b"y"
    for member in ("n2", "n3", "n4"):
        assert c.log(member) == s5_log
        assert c.values(member) == [b"y"]
    assert c.commit("n5") == len(s5_log)


def _figure_3_7_with_bug_continue_to_s5() -> Cluster:
    c = _figure_3_7_until_s1_replicates_old_entry()
    # The broken leader counted replicas of x and committed it; S1..S3 applied x.
    assert c.commit("n1") == 2
    assert [e.data for e in c.applied["n1"]] == [b"", b"x"]
    c.run(1)
    assert c.values("n2") == [b"x"] and c.values("n3") == [b"x"]
    # (d) S1 crashes; S5 restarts and is elected by S3, S4 and itself (its last term is
    # higher than theirs), then replicates its own index 2 and commits it.
    c.filters.clear()
    c.crash("n1")
    c.restart("n5")
    c.elect("n5")
    c.stabilize()
    c.run(3)
    return c


def test_3_6_2_figure_3_7_injected_old_term_commit_is_caught_by_checker() -> None:
    """Thesis 3.6.2 / figure 3.7, negative control: with "old-term-commit" injected, the
    same script makes S1 commit x by counting replicas; S5 is then elected anyway and
    commits its own, different entry at index 2, and the SafetyChecker raises Violation
    (state machine safety: two members applied different entries at index 2)."""
    expected = r"state machine safety: n5 applied term \d+ b'' at index 2, .* b'x'"
    with inject("old-term-commit"), pytest.raises(Violation, match=expected):
        _figure_3_7_with_bug_continue_to_s5()


def test_3_6_2_figure_3_7_injected_bug_s5_wins_despite_committed_entry() -> None:
    """Thesis 3.6.2 / figure 3.7 (d): with the bug, the election restriction no longer
    protects x: S5, whose log lacks the committed x, wins a majority of votes."""
    with inject("old-term-commit"):
        c = _figure_3_7_until_s1_replicates_old_entry()
        assert c.commit("n1") == 2
        c.run(1)
        c.filters.clear()
        c.crash("n1")
        c.restart("n5")
        # Only votes flow: the outcome of the election itself is what this test is about.
        c.elect("n5", which=lambda m: isinstance(m, RequestVote | VoteResponse))
    granted = {m.src for m in c.sent_of(VoteResponse, dst="n5") if m.granted and not m.pre}
    assert {"n3", "n4"} <= granted  # n3 applied x, yet votes for a log without it
    assert c.node("n5").role is Role.LEADER
    assert c.node("n5").log_entries()[1].data == b""  # not x, which S1..S3 applied
    assert c.values("n3") == [b"x"]


# -- 10.2.1 ----------------------------------------------------------------------------------


def test_10_2_1_leader_counts_itself_only_after_advance() -> None:
    """Thesis 10.2.1: the leader sends AppendEntries before its own write is durable, and
    counts its own copy toward the commit only once the driver has persisted it (advance).
    With one follower's acknowledgement and its own copy not yet durable, the entry stays
    uncommitted; advance() then commits it."""
    c = Cluster(3)
    c.elect("n1")
    leader = c.node("n1")
    index = leader.propose(b"w")
    rd = leader.ready()
    assert [e.index for e in rd.entries] == [index]
    appends = [m for m in rd.messages if isinstance(m, AppendEntries)]
    assert {m.dst for m in appends} == {"n2", "n3"}  # sent before the leader persisted
    c.send(rd.messages)
    c.deliver(lambda m: m.dst == "n2")  # only n2 gets it
    c.drain("n2")
    c.deliver(lambda m: m.dst == "n1")  # n2's acknowledgement reaches the leader
    assert leader.status().commit == index - 1
    # The leader's disk write completes.
    c.persist("n1", rd)
    c.send(rd.persisted_messages)
    c.apply("n1", rd)
    leader.advance(rd)
    assert leader.status().commit == index
    c.stabilize()
    assert c.values("n1") == [b"w"]


def test_10_2_1_single_member_commits_only_after_advance() -> None:
    """Thesis 10.2.1: a one-member cluster's leader is its own majority, so its entries
    commit exactly when the driver reports them durable, not when proposed."""
    c = Cluster(1)
    node = c.node("n1")
    node.campaign()
    assert node.role is Role.LEADER and node.term == 1
    rd = node.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(1, 1)]
    assert rd.committed_entries == ()
    assert node.status().commit == 0
    c.handle("n1", rd)
    assert node.status().commit == 1
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [1]
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    c.handle("n1", rd)
    index = node.propose(b"solo")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"solo"] and rd.committed_entries == ()
    assert node.status().commit == index - 1
    c.handle("n1", rd)
    assert node.status().commit == index
    c.stabilize()
    assert c.values("n1") == [b"solo"]
    assert not c.sent_of(TimeoutNow)


def test_10_2_1_leader_crash_before_own_write_loses_nothing_committed() -> None:
    """Thesis 10.2.1: because the leader may send an entry before its own disk write, it
    can crash having replicated an entry it never persisted. The followers then hold it;
    one of them is elected (the restarted old leader, lacking it, cannot win against
    them), commits it under its no-op, and the old leader gets it back."""
    c = Cluster(3)
    c.elect("n1")
    index = c.node("n1").propose(b"w")
    rd = c.node("n1").ready()
    c.send(rd.messages)  # the appends go out...
    c.crash("n1")  # ...and the leader dies before persisting anything
    assert [e.index for e in c.stores["n1"].entries] == [1]
    c.stabilize()
    assert c.log("n2")[-1] == c.log("n3")[-1] == (index, 1, b"w")
    c.restart("n1")
    assert c.log("n1") == [(1, 1, b"")]
    c.expire_leases(["n1", "n2", "n3"])
    c.node("n1").campaign()
    c.stabilize()
    assert c.node("n1").role is not Role.LEADER
    c.elect("n2")
    c.stabilize()
    c.run(1)
    for member in c.ids:
        assert c.log(member) == [(1, 1, b""), (2, 1, b"w"), (3, c.node("n2").term, b"")]
        assert c.values(member) == [b"w"]


# -- telling followers the commit index ---------------------------------------------------


def test_commit_index_reaches_each_follower_in_an_unanswered_commit() -> None:
    """Once an entry commits, a follower holding every entry sent to it hears the new
    commit index in a Commit (not an empty append it would answer); one whose
    acknowledgement arrives after the commit (outside the quorum) gets its own Commit
    then. Neither answers, and both apply the entry."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    sent_before = len(c.sent)
    c.node("n1").propose(b"x")
    # n3's acknowledgement waits in the queue until n1 has committed with n2's.
    c.stabilize(lambda m: m.src != "n3")
    assert c.commit("n1") == 2 and c.commit("n2") == 2 and c.commit("n3") == 1
    c.stabilize()
    assert [c.commit(m) for m in c.ids] == [2, 2, 2]
    assert c.values("n3") == [b"x"]
    sent = c.sent[sent_before:]
    commits = [(m.dst, m.commit) for m in sent if isinstance(m, Commit)]
    assert sorted(commits) == [("n2", 2), ("n3", 2)]
    # One append out to each follower, one answer back from each: nothing else.
    appends = [m for m in sent if isinstance(m, AppendEntries)]
    answers = [m for m in sent if isinstance(m, AppendResponse)]
    assert len(appends) == 2 and all(m.entries for m in appends), appends
    assert sorted(m.src for m in answers) == ["n2", "n3"], answers


def test_a_lost_commit_is_made_good_by_the_next_heartbeat() -> None:
    """A Commit is never answered, so nothing resends it: the heartbeat's commit index
    (capped at the follower's match, like the Commit's) brings the follower up to date."""
    c = Cluster(3)
    c.elect("n1")
    c.stabilize()
    c.node("n1").propose(b"x")
    with c.dropping(lambda m: isinstance(m, Commit)):
        c.stabilize()
    assert c.commit("n1") == 2 and c.commit("n2") == 1 and c.commit("n3") == 1
    c.run(1)  # one heartbeat interval
    c.stabilize()
    assert [c.commit(m) for m in c.ids] == [2, 2, 2]
