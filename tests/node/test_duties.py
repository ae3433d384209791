"""The leader's duties (shoal/node/duties.py), by direct calls: one test or more per rule,
then Hypothesis properties over random stores and statuses.

No member runs here: the store is a real `KeyValueStore` driven through `apply`, the Raft
status a value built by hand, and time a number.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.kv import Compact, KeyValueStore, LeaseGrant, Put
from shoal.kv import snapshot as snapshot_kv
from shoal.node.duties import (
    CHECKERS_KEY,
    CompactHistory,
    DutyConfig,
    LeaderStatus,
    PromoteLearner,
    PublishRoster,
    ReportLeases,
    RevokeLease,
    leader_duties,
    reachable,
)
from shoal.raft import ConfState, MemberProgress, Role, Status
from shoal.raft.progress import ProgressState
from shoal.registry import encode_roster, parse_roster

CONFIG = DutyConfig(name="n1", election_ticks=10, tick_seconds=0.05, keep_revisions=100)
TIMEOUT = CONFIG.election_timeout  # 0.5 s


def raft(
    *,
    role: Role = Role.LEADER,
    voters: frozenset[str] = frozenset({"n1", "n2", "n3"}),
    learners: frozenset[str] = frozenset(),
    commit: int = 10,
    match: dict[str, int] | None = None,
) -> Status:
    peers = (voters | learners) - {"n1"}
    matches = match if match is not None else dict.fromkeys(peers, commit)
    return Status(
        id="n1",
        role=role,
        term=2,
        leader="n1" if role is Role.LEADER else None,
        commit=commit,
        applied=commit,
        last_index=commit,
        conf=ConfState(voters=voters, learners=learners),
        progress={
            p: MemberProgress(matches.get(p, 0), commit + 1, ProgressState.REPLICATE) for p in peers
        },
    )


def status(**changes: object) -> LeaderStatus:
    """A leader in office for 3 (odd, so no lease report) ticks, heard from everyone."""
    base = LeaderStatus(
        raft=raft(),
        ticks=3,
        heard={"n2": 100.0, "n3": 100.0},
        first_seen={"n1": 90.0, "n2": 90.0, "n3": 90.0},
        last_compaction=100.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def store_with_leases(ttls: dict[int, int], granted_at: float = 0.0) -> KeyValueStore:
    """A leader's store (its lease table promoted, no extension) with these leases."""
    kv = KeyValueStore()
    for lease_id, ttl in ttls.items():
        kv.apply(LeaseGrant(id=lease_id, ttl_seconds=ttl), granted_at)
    kv.leases.promote(granted_at, 0.0)
    return kv


def of(kind: type, duties: list[object]) -> list[object]:
    return [d for d in duties if isinstance(d, kind)]


# -- not leader ------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.PRE_CANDIDATE])
def test_a_member_that_does_not_lead_has_no_duties(role: Role) -> None:
    kv = store_with_leases({1: 1})
    s = status(raft=raft(role=role), ticks=20)
    assert leader_duties(1000.0, kv, s, CONFIG) == []


# -- lease expiry ----------------------------------------------------------------------


def test_expired_leases_are_revoked_soonest_first() -> None:
    kv = store_with_leases({7: 5, 3: 1, 9: 2})
    duties = leader_duties(10.0, kv, status(), CONFIG)
    assert of(RevokeLease, duties) == [RevokeLease(3), RevokeLease(9), RevokeLease(7)]


def test_a_lease_not_yet_expired_is_kept() -> None:
    kv = store_with_leases({1: 5})
    assert of(RevokeLease, leader_duties(4.999, kv, status(), CONFIG)) == []
    assert of(RevokeLease, leader_duties(5.0, kv, status(), CONFIG)) == [RevokeLease(1)]


def test_a_revoke_in_flight_is_not_proposed_again() -> None:
    kv = store_with_leases({1: 1, 2: 1})
    duties = leader_duties(10.0, kv, status(revoking=frozenset({1})), CONFIG)
    assert of(RevokeLease, duties) == [RevokeLease(2)]


def test_a_mass_expiry_is_spread_over_ticks() -> None:
    kv = store_with_leases({i: 1 for i in range(1, 201)})
    config = dataclasses.replace(CONFIG, max_revokes=64)
    first = of(RevokeLease, leader_duties(10.0, kv, status(), config))
    assert first == [RevokeLease(i) for i in range(1, 65)]
    # The next tick, with those in flight, proposes nothing new from the same window:
    # the window is the soonest max_revokes, whatever is in flight.
    in_flight = frozenset(d.lease_id for d in first)  # type: ignore[attr-defined]
    again = leader_duties(10.05, kv, status(revoking=in_flight), config)
    assert of(RevokeLease, again) == []


def test_a_follower_store_expires_nothing_even_on_a_leader_status() -> None:
    kv = KeyValueStore()
    kv.apply(LeaseGrant(id=1, ttl_seconds=1), 0.0)  # not promoted: no expiries
    assert of(RevokeLease, leader_duties(100.0, kv, status(), CONFIG)) == []


# -- learner promotion -----------------------------------------------------------------


def test_a_caught_up_learner_that_joined_to_vote_is_promoted() -> None:
    r = raft(voters=frozenset({"n1", "n2"}), learners=frozenset({"n4"}), commit=10)
    s = status(raft=r, promoting=frozenset({"n4"}))
    assert of(PromoteLearner, leader_duties(0.0, KeyValueStore(), s, CONFIG)) == [
        PromoteLearner("n4")
    ]


def test_a_learner_behind_the_commit_index_waits() -> None:
    r = raft(
        voters=frozenset({"n1", "n2"}),
        learners=frozenset({"n4"}),
        commit=10,
        match={"n2": 10, "n4": 9},
    )
    s = status(raft=r, promoting=frozenset({"n4"}))
    assert of(PromoteLearner, leader_duties(0.0, KeyValueStore(), s, CONFIG)) == []


def test_a_learner_added_without_promote_stays_a_learner() -> None:
    r = raft(voters=frozenset({"n1", "n2"}), learners=frozenset({"n4"}))
    assert of(PromoteLearner, leader_duties(0.0, KeyValueStore(), status(raft=r), CONFIG)) == []


def test_one_promotion_at_a_time_by_name() -> None:
    r = raft(voters=frozenset({"n1"}), learners=frozenset({"n5", "n4"}))
    s = status(raft=r, promoting=frozenset({"n4", "n5"}))
    assert of(PromoteLearner, leader_duties(0.0, KeyValueStore(), s, CONFIG)) == [
        PromoteLearner("n4")
    ]


def test_a_promoted_voter_is_not_promoted_again() -> None:
    s = status(promoting=frozenset({"n3"}))  # n3 is already a voter
    assert of(PromoteLearner, leader_duties(0.0, KeyValueStore(), s, CONFIG)) == []


# -- the health-check roster -----------------------------------------------------------


def roster_of(duties: list[object]) -> tuple[str, ...] | None:
    found = of(PublishRoster, duties)
    assert len(found) <= 1
    if not found:
        return None
    duty = found[0]
    assert isinstance(duty, PublishRoster)
    assert parse_roster(duty.value) == duty.live
    return duty.live


def test_the_roster_waits_two_election_timeouts_in_office() -> None:
    kv = KeyValueStore()
    early = status(ticks=2 * CONFIG.election_ticks)
    assert roster_of(leader_duties(100.1, kv, early, CONFIG)) is None
    later = status(ticks=2 * CONFIG.election_ticks + 1)
    assert roster_of(leader_duties(100.1, kv, later, CONFIG)) == ("n1", "n2", "n3")


def test_a_voter_not_heard_from_for_two_election_timeouts_leaves_the_roster() -> None:
    kv = KeyValueStore()
    s = status(ticks=50, heard={"n2": 100.0, "n3": 100.0 - 2 * TIMEOUT})
    assert roster_of(leader_duties(100.0, kv, s, CONFIG)) == ("n1", "n2")


def test_a_voter_never_heard_from_gets_a_grace_from_first_sight() -> None:
    kv = KeyValueStore()
    s = status(ticks=50, heard={"n2": 100.0}, first_seen={"n3": 99.5})
    assert roster_of(leader_duties(100.0, kv, s, CONFIG)) == ("n1", "n2", "n3")
    late = leader_duties(99.5 + 2 * TIMEOUT, kv, dataclasses.replace(s), CONFIG)
    assert roster_of(late) == ("n1", "n2")


def test_an_unchanged_roster_is_not_written_again() -> None:
    kv = KeyValueStore()
    kv.apply(Put(key=CHECKERS_KEY, value=encode_roster(["n1", "n2", "n3"])), 0.0)
    assert roster_of(leader_duties(100.0, kv, status(ticks=50), CONFIG)) is None


def test_no_second_roster_write_while_one_is_in_flight() -> None:
    s = status(ticks=50, roster_pending=True)
    assert roster_of(leader_duties(100.0, KeyValueStore(), s, CONFIG)) is None


def test_a_cluster_of_one_writes_no_roster_but_keeps_one_it_has_current() -> None:
    alone = raft(voters=frozenset({"n1"}))
    s = status(raft=alone, ticks=50, heard={}, first_seen={"n1": 0.0})
    assert roster_of(leader_duties(100.0, KeyValueStore(), s, CONFIG)) is None
    # A cluster that shrank to one has a roster naming the removed members: fix it.
    kv = KeyValueStore()
    kv.apply(Put(key=CHECKERS_KEY, value=encode_roster(["n1", "n2"])), 0.0)
    assert roster_of(leader_duties(100.0, kv, s, CONFIG)) == ("n1",)


# -- lease reports and compaction ------------------------------------------------------


def test_leases_are_reported_once_per_election_timeout_in_office() -> None:
    kv = KeyValueStore()
    reports = [
        ticks
        for ticks in range(1, 41)
        if of(ReportLeases, leader_duties(0.0, kv, status(ticks=ticks), CONFIG))
    ]
    assert reports == [10, 20, 30, 40]


def history(revisions: int) -> KeyValueStore:
    kv = KeyValueStore()
    for i in range(revisions):
        kv.apply(Put(key=b"k", value=b"%d" % i), 0.0)
    return kv


def test_history_over_twice_the_keep_is_compacted_to_the_keep() -> None:
    kv = history(2 * CONFIG.keep_revisions + 1)  # revision 202: 201 revisions of history
    duties = leader_duties(200.0, kv, status(last_compaction=100.0), CONFIG)
    assert of(CompactHistory, duties) == [CompactHistory(kv.revision - CONFIG.keep_revisions)]


def test_history_within_twice_the_keep_is_left_alone() -> None:
    kv = history(2 * CONFIG.keep_revisions - 1)
    assert of(CompactHistory, leader_duties(200.0, kv, status(), CONFIG)) == []


def test_compaction_waits_compact_every_seconds_since_the_last() -> None:
    kv = history(3 * CONFIG.keep_revisions)
    assert of(CompactHistory, leader_duties(159.9, kv, status(last_compaction=100.0), CONFIG)) == []
    assert of(CompactHistory, leader_duties(160.0, kv, status(last_compaction=100.0), CONFIG))


def test_compacted_history_counts_from_the_compaction() -> None:
    kv = history(3 * CONFIG.keep_revisions)
    kv.apply(Compact(revision=kv.revision - CONFIG.keep_revisions), 0.0)
    assert of(CompactHistory, leader_duties(500.0, kv, status(), CONFIG)) == []


def test_duties_come_in_the_order_the_loop_proposes_them() -> None:
    kv = history(3 * CONFIG.keep_revisions)
    kv.apply(LeaseGrant(id=1, ttl_seconds=1), 0.0)
    kv.leases.promote(0.0, 0.0)
    r = raft(learners=frozenset({"n4"}))
    s = status(raft=r, ticks=30, promoting=frozenset({"n4"}), last_compaction=0.0)
    kinds = [type(d) for d in leader_duties(100.0, kv, s, CONFIG)]
    assert kinds == [RevokeLease, PromoteLearner, PublishRoster, ReportLeases, CompactHistory]


# -- reachable (membership checks) -----------------------------------------------------


def test_before_its_first_round_a_leader_counts_peers_that_acknowledged_its_term() -> None:
    r = raft(match={"n2": 5, "n3": 0})
    s = status(raft=r, ticks=CONFIG.election_ticks + 1, heard={})
    assert reachable(100.0, s, CONFIG) == {"n1", "n2"}


def test_after_its_first_round_a_leader_counts_whom_it_heard_within_a_timeout() -> None:
    s = status(ticks=CONFIG.election_ticks + 2, heard={"n2": 100.0, "n3": 100.0 - TIMEOUT})
    assert reachable(100.0, s, CONFIG) == {"n1", "n2"}


def test_a_voter_never_heard_from_is_not_reachable_whatever_its_roster_grace() -> None:
    # first_seen gives a roster grace; it must never make a change look safe.
    s = status(ticks=50, heard={"n2": 100.0}, first_seen={"n3": 100.0})
    assert reachable(100.0, s, CONFIG) == {"n1", "n2"}


# -- properties ------------------------------------------------------------------------

NAMES = ("n1", "n2", "n3", "n4", "n5")


@st.composite
def situations(draw: st.DrawFn) -> tuple[float, KeyValueStore, LeaderStatus, DutyConfig]:
    config = DutyConfig(
        name="n1",
        election_ticks=draw(st.integers(2, 12)),
        tick_seconds=draw(st.sampled_from([0.01, 0.05, 0.1])),
        keep_revisions=draw(st.integers(1, 20)),
        compact_every=draw(st.sampled_from([0.0, 1.0, 60.0])),
        max_revokes=draw(st.integers(1, 8)),
    )
    kv = KeyValueStore()
    leases = draw(st.dictionaries(st.integers(1, 50), st.integers(1, 30), max_size=20))
    for lease_id, ttl in leases.items():
        kv.apply(LeaseGrant(id=lease_id, ttl_seconds=ttl), draw(st.floats(0, 20)))
    for i in range(draw(st.integers(0, 60))):
        kv.apply(Put(key=b"k%d" % (i % 3), value=b"v"), 0.0)
    if draw(st.booleans()):
        kv.apply(
            Put(key=CHECKERS_KEY, value=encode_roster(draw(st.sets(st.sampled_from(NAMES))))), 0.0
        )
    if draw(st.booleans()):
        kv.leases.promote(draw(st.floats(0, 20)), draw(st.floats(0, 2)))
    others = draw(st.sets(st.sampled_from(NAMES[1:])))
    voters = (
        frozenset({"n1", *draw(st.sets(st.sampled_from(sorted(others))))})
        if others
        else frozenset({"n1"})
    )
    learners = frozenset(others) - voters
    commit = draw(st.integers(0, 30))
    match = {p: draw(st.integers(0, 30)) for p in sorted(others)}
    role = draw(st.sampled_from([Role.LEADER, Role.LEADER, Role.FOLLOWER]))
    now = draw(st.floats(0, 100))
    status = LeaderStatus(
        raft=raft(role=role, voters=voters, learners=learners, commit=commit, match=match),
        ticks=draw(st.integers(1, 60)),
        heard={p: draw(st.floats(0, 100)) for p in draw(st.sets(st.sampled_from(sorted(voters))))},
        first_seen={p: draw(st.floats(0, 100)) for p in sorted(voters)},
        revoking=frozenset(draw(st.sets(st.sampled_from(sorted(leases) or [0])))),
        promoting=frozenset(draw(st.sets(st.sampled_from(NAMES[1:])))),
        roster_pending=draw(st.booleans()),
        last_compaction=draw(st.floats(0, 100)),
    )
    return now, kv, status, config


@settings(max_examples=300, deadline=None)
@given(situations())
def test_duties_keep_their_rules(
    situation: tuple[float, KeyValueStore, LeaderStatus, DutyConfig],
) -> None:
    now, kv, s, config = situation
    before = snapshot_kv(kv)
    duties = leader_duties(now, kv, s, config)
    assert snapshot_kv(kv) == before, "the duties changed the store"
    assert leader_duties(now, kv, s, config) == duties, "not a function of its inputs"
    if s.raft.role is not Role.LEADER:
        assert duties == []
        return

    revokes = [d.lease_id for d in duties if isinstance(d, RevokeLease)]
    assert len(revokes) == len(set(revokes)) <= config.max_revokes
    assert not set(revokes) & s.revoking
    expired = kv.leases.expired(now)
    assert revokes == [i for i in expired[: config.max_revokes] if i not in s.revoking]

    promotions = [d.name for d in duties if isinstance(d, PromoteLearner)]
    assert len(promotions) <= 1
    for name in promotions:
        assert name in s.promoting and name in s.raft.conf.learners
        assert s.raft.progress[name].match >= s.raft.commit

    rosters = [d for d in duties if isinstance(d, PublishRoster)]
    assert len(rosters) <= 1
    for roster in rosters:
        assert not s.roster_pending and s.ticks > 2 * config.election_ticks
        assert "n1" in roster.live and set(roster.live) <= s.raft.conf.voters
        stored = kv.get(CHECKERS_KEY)
        assert stored is None or stored.value != roster.value

    reports = [d for d in duties if isinstance(d, ReportLeases)]
    assert len(reports) == (1 if s.ticks % config.election_ticks == 0 else 0)

    for compaction in (d for d in duties if isinstance(d, CompactHistory)):
        assert now - s.last_compaction >= config.compact_every
        assert compaction.revision == kv.revision - config.keep_revisions
        assert compaction.revision > kv.compacted_revision + config.keep_revisions

    heard_now = reachable(now, s, config)
    assert "n1" in heard_now
    if s.ticks > config.election_ticks + 1:
        assert heard_now - {"n1"} <= set(s.heard), "reachable only counts answers"
