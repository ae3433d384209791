"""Leases: attach/detach through puts, revoke in one revision, leader-local expiry."""

from __future__ import annotations

import pytest

from shoal.kv import (
    Delete,
    KeyValueStore,
    LeaseCheckpoint,
    LeaseCheckpoints,
    LeaseCheckpointsResult,
    LeaseExists,
    LeaseGrant,
    LeaseNotFound,
    LeaseRevoke,
    LeaseRevokeResult,
    LeaseState,
    LeaseTimeToLive,
    NotPrimary,
    Put,
    Txn,
)


def store_with_lease(lease_id: int = 1, ttl: int = 10, now: float = 0.0) -> KeyValueStore:
    store = KeyValueStore()
    store.apply(LeaseGrant(id=lease_id, ttl_seconds=ttl), now)
    return store


def test_grant_twice_is_rejected() -> None:
    store = store_with_lease(7)
    with pytest.raises(LeaseExists, match="lease 7 already exists"):
        store.apply(LeaseGrant(id=7, ttl_seconds=5), 0.0)


def test_put_attaches_and_put_without_lease_detaches() -> None:
    store = store_with_lease(1)
    store.apply(LeaseGrant(id=2, ttl_seconds=10), 0.0)
    store.apply(Put(key=b"a", value=b"1", lease=1), 0.0)
    store.apply(Put(key=b"b", value=b"1", lease=1), 0.0)
    assert store.leases.keys_of(1) == {b"a", b"b"}
    store.apply(Put(key=b"a", value=b"2"), 0.0)  # no lease: detached
    assert store.leases.keys_of(1) == {b"b"}
    kv = store.get(b"a")
    assert kv is not None and kv.lease == 0
    store.apply(Put(key=b"b", value=b"2", lease=2), 0.0)  # moved to another lease
    assert store.leases.keys_of(1) == frozenset()
    assert store.leases.keys_of(2) == {b"b"}
    store.apply(Delete(key=b"b"), 0.0)  # a delete detaches too
    assert store.leases.keys_of(2) == frozenset()


def test_revoke_deletes_attached_keys_in_one_revision() -> None:
    store = store_with_lease(1)
    store.apply(Put(key=b"x", value=b"1"), 0.0)
    txn = Txn(success=(Put(key=b"a", value=b"1", lease=1), Put(key=b"b", value=b"1", lease=1)))
    store.apply(txn, 0.0)
    assert store.revision == 3
    result = store.apply(LeaseRevoke(id=1), 0.0)
    assert result == LeaseRevokeResult(revision=4, deleted=(b"a", b"b"))
    assert [kv.key for kv in store.range(b"\x00", b"\x00").kvs] == [b"x"]
    assert [(e.revision, e.kv.key) for e in store.events(4)] == [(4, b"a"), (4, b"b")]
    assert 1 not in store.leases
    with pytest.raises(LeaseNotFound, match="lease 1 not found"):
        store.apply(LeaseRevoke(id=1), 0.0)
    with pytest.raises(LeaseNotFound):
        store.apply(Put(key=b"a", value=b"1", lease=1), 0.0)


def test_revoke_without_keys_keeps_the_revision() -> None:
    store = store_with_lease(1)
    assert store.apply(LeaseRevoke(id=1), 0.0) == LeaseRevokeResult(revision=1)


def test_followers_never_expire_leases() -> None:
    store = store_with_lease(1, ttl=5, now=0.0)
    assert not store.leases.is_primary
    assert store.leases.expired(1e9) == []
    with pytest.raises(NotPrimary, match="needs the leader"):
        store.leases.keepalive(1, 0.0)


def test_expired_is_ordered_by_expiry_then_id() -> None:
    store = KeyValueStore()
    store.leases.promote(0.0, extend=0.0)
    store.apply(LeaseGrant(id=3, ttl_seconds=5), 0.0)  # expires at 5
    store.apply(LeaseGrant(id=1, ttl_seconds=8), 0.0)  # 8
    store.apply(LeaseGrant(id=2, ttl_seconds=5), 0.0)  # 5
    store.apply(LeaseGrant(id=4, ttl_seconds=2), 1.0)  # 3
    assert store.leases.expired(2.9) == []
    assert store.leases.expired(5.0) == [4, 2, 3]
    assert store.leases.expired(100.0) == [4, 2, 3, 1]


def test_keepalive_restarts_the_full_ttl() -> None:
    store = KeyValueStore()
    store.leases.promote(0.0, extend=0.0)
    store.apply(LeaseGrant(id=1, ttl_seconds=10), 0.0)
    assert store.leases.keepalive(1, 8.0) == 10
    assert store.leases.expired(17.9) == []
    assert store.leases.expired(18.0) == [1]
    with pytest.raises(LeaseNotFound):
        store.leases.keepalive(99, 0.0)


def test_promote_keeps_each_deadline_and_adds_extend() -> None:
    store = store_with_lease(1, ttl=10)  # granted at 0: its deadline here is 10
    store.apply(Put(key=b"a", value=b"1", lease=1), 0.0)
    store.leases.promote(4.0, extend=1.5)
    assert store.leases.expired(11.4) == []
    assert store.leases.expired(11.5) == [1]
    assert store.leases.time_to_live(1, 5.0) == LeaseTimeToLive(
        id=1, granted_ttl=10, remaining=6.5, keys=(b"a",)
    )
    store.leases.demote()
    assert store.leases.expired(1e9) == []
    # Past its deadline, a new leader still gives it `extend` (its holder may be alive
    # and unable to reach anyone during the election), never a fresh TTL.
    store.leases.promote(100.0, extend=1.5)
    assert store.leases.expired(101.4) == []
    assert store.leases.expired(101.5) == [1]


def test_a_restored_lease_counts_from_promotion() -> None:
    store = KeyValueStore.restored(
        revision=1, kvs=[], leases=[LeaseState(id=1, ttl=10, checkpoint=4.0)]
    )
    store.leases.promote(100.0, extend=1.0)
    assert store.leases.expired(104.9) == []
    assert store.leases.expired(105.0) == [1]


def test_reports_carry_the_renewed_leases_and_followers_keep_the_deadline() -> None:
    leader, follower = store_with_lease(1, ttl=60), store_with_lease(1, ttl=60)
    for store in (leader, follower):
        store.apply(LeaseGrant(id=2, ttl_seconds=60), 0.0)
    assert leader.leases.checkpoints(1.0) == []  # not primary
    leader.leases.promote(0.0, extend=1.0)
    leader.leases.keepalive(1, 30.0)  # lease 2 is never renewed: nothing to report
    report = LeaseCheckpoints(checkpoints=tuple(leader.leases.checkpoints(41.0)))
    assert report.checkpoints == (LeaseCheckpoint(id=1, remaining_seconds=49.0),)
    assert leader.leases.checkpoints(42.0) == []  # reported once
    for store in (leader, follower):
        assert store.apply(report, 41.0) == LeaseCheckpointsResult(recorded=1, revision=1)
    assert leader.leases.expired(89.9) == [2]  # the leader keeps its own deadline of 1
    # The follower takes office later: lease 1 runs to 41 + 49 = 90, lease 2 to 60.
    follower.leases.promote(50.0, extend=1.0)
    assert follower.leases.expired(60.9) == []
    assert follower.leases.expired(61.0) == [2]
    assert follower.leases.expired(91.0) == [2, 1]
    leader.apply(LeaseRevoke(id=2), 50.0)  # a report naming a revoked lease skips it
    gone = LeaseCheckpoints(checkpoints=(LeaseCheckpoint(id=2, remaining_seconds=1.0),))
    assert leader.apply(gone, 51.0) == LeaseCheckpointsResult(recorded=0, revision=1)
    with pytest.raises(LeaseNotFound):
        leader.apply(LeaseCheckpoint(id=9, remaining_seconds=1.0), 0.0)


ELECTION = 0.5  # seconds
REPORT = ELECTION


def _cluster(ttl: int) -> list[KeyValueStore]:
    stores = [KeyValueStore() for _ in range(3)]
    for store in stores:
        store.apply(LeaseGrant(id=1, ttl_seconds=ttl), 0.0)
    stores[0].leases.promote(0.0, extend=ELECTION)
    return stores


def _report(stores: list[KeyValueStore], leader: int, now: float) -> None:
    checkpoints = tuple(stores[leader].leases.checkpoints(now))
    if checkpoints:
        for store in stores:
            store.apply(LeaseCheckpoints(checkpoints=checkpoints), now + 0.002)


@pytest.mark.parametrize("hold", [0.3, 1.0, 1.7, 2.0])
def test_leadership_moving_every_2s_cannot_keep_a_dead_lease_alive(hold: float) -> None:
    """The issue's scenario in miniature: a 5 s lease renewed until `hold`, then its
    holder dies; leadership moves every 2 s (a transfer: the report goes first)."""
    stores, leader, step, t = _cluster(5), 0, 0.05, 0.0
    revoked_at = None
    while t < 30 and revoked_at is None:
        t = round(t + step, 3)
        if t <= hold and round(t * 100) % 33 == 0:
            stores[leader].leases.keepalive(1, t)
        if round(t * 1000) % round(REPORT * 1000) == 0:
            _report(stores, leader, t)
        if round(t * 1000) % 2000 == 0:
            _report(stores, leader, t)
            stores[leader].leases.demote()
            leader = (leader + 1) % 3
            stores[leader].leases.promote(t, extend=ELECTION)
        if stores[leader].leases.expired(t):
            revoked_at = t
    assert revoked_at is not None and revoked_at <= hold + 5 + 2 * ELECTION + step, revoked_at


@pytest.mark.parametrize("crash", [1.0, 1.25, 1.49, 1.51, 2.2, 7.77])
@pytest.mark.parametrize("ttl", [1, 2, 5])
def test_a_live_lease_survives_a_leader_crash_at_any_moment(crash: float, ttl: int) -> None:
    """The holder renews every ttl/3 with whoever leads; the leader dies at `crash`
    (its unreported renewals die with it) and a new one takes office two election
    timeouts later. The lease must never expire."""
    stores, leader, step, t = _cluster(ttl), 0, 0.01, 0.0
    next_renewal, elected_at = 0.0, None
    while t < crash + 3 * ttl:
        t = round(t + step, 3)
        if elected_at is None and t >= crash:
            stores[leader].leases.demote()  # dead: nothing more from it
            leader, elected_at = 1, t + 2 * ELECTION
        if elected_at is not None and t >= elected_at and not stores[1].leases.is_primary:
            stores[1].leases.promote(t, extend=ELECTION)
        serving = stores[leader].leases.is_primary
        if serving and t >= next_renewal:
            stores[leader].leases.keepalive(1, t)
            next_renewal = t + ttl / 3
        if serving and round(t * 1000) % round(REPORT * 1000) == 0:
            _report(stores, leader, t)
        if serving:
            assert stores[leader].leases.expired(t) == [], (t, crash, ttl)


def test_time_to_live_on_a_follower_and_unknown_lease() -> None:
    store = store_with_lease(1, ttl=10)
    assert store.leases.time_to_live(1, 3.0) == LeaseTimeToLive(
        id=1, granted_ttl=10, remaining=10.0, keys=()
    )
    with pytest.raises(LeaseNotFound, match="lease 2 not found"):
        store.leases.time_to_live(2, 0.0)
