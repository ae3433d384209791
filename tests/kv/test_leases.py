"""Leases: attach/detach through puts, revoke in one revision, leader-local expiry."""

from __future__ import annotations

import pytest

from shoal.kv import (
    Delete,
    KeyValueStore,
    LeaseCheckpoint,
    LeaseExists,
    LeaseGrant,
    LeaseNotFound,
    LeaseRevoke,
    LeaseRevokeResult,
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


def test_promote_gives_full_ttl_plus_extend() -> None:
    store = store_with_lease(1, ttl=10)
    store.apply(Put(key=b"a", value=b"1", lease=1), 0.0)
    store.leases.promote(100.0, extend=1.5)
    assert store.leases.expired(111.4) == []
    assert store.leases.expired(111.5) == [1]
    assert store.leases.time_to_live(1, 105.0) == LeaseTimeToLive(
        id=1, granted_ttl=10, remaining=6.5, keys=(b"a",)
    )
    store.leases.demote()
    assert store.leases.expired(1e9) == []


def test_checkpoint_stops_elections_from_renewing_a_dead_lease() -> None:
    store = store_with_lease(1, ttl=60)
    store.leases.promote(0.0, extend=1.0)
    (checkpoint,) = store.leases.checkpoints(41.0, min_ttl=30)
    assert checkpoint == LeaseCheckpoint(id=1, remaining_seconds=20.0)
    store.apply(checkpoint, 41.0)
    # A new leader (another member, same replicated state) starts from the checkpoint.
    store.leases.demote()
    assert store.leases.time_to_live(1, 50.0).remaining == 20.0
    store.leases.promote(50.0, extend=1.0)
    assert store.leases.expired(70.9) == []
    assert store.leases.expired(71.0) == [1]
    # A keep-alive forgets the checkpoint: the full TTL is back.
    store.leases.keepalive(1, 60.0)
    store.leases.demote()
    store.leases.promote(61.0, extend=0.0)
    assert store.leases.expired(120.9) == []


def test_checkpoints_skip_short_leases_and_followers() -> None:
    store = store_with_lease(1, ttl=5)
    store.apply(LeaseGrant(id=2, ttl_seconds=100), 0.0)
    assert store.leases.checkpoints(1.0) == []  # not primary
    store.leases.promote(0.0, extend=0.0)
    assert [c.id for c in store.leases.checkpoints(1.0, min_ttl=10)] == [2]
    with pytest.raises(LeaseNotFound):
        store.apply(LeaseCheckpoint(id=9, remaining_seconds=1.0), 0.0)


def test_time_to_live_on_a_follower_and_unknown_lease() -> None:
    store = store_with_lease(1, ttl=10)
    assert store.leases.time_to_live(1, 3.0) == LeaseTimeToLive(
        id=1, granted_ttl=10, remaining=10.0, keys=()
    )
    with pytest.raises(LeaseNotFound, match="lease 2 not found"):
        store.leases.time_to_live(2, 0.0)


def test_checkpointed_says_whether_followers_hold_a_remaining_ttl() -> None:
    store = store_with_lease(1, ttl=60)
    assert store.leases.checkpointed(1) is False
    store.apply(LeaseCheckpoint(id=1, remaining_seconds=20.0), 1.0)
    assert store.leases.checkpointed(1) is True  # the member refreshes it on keep-alive
    store.apply(LeaseCheckpoint(id=1, remaining_seconds=60.0), 2.0)
    assert store.leases.time_to_live(1, 3.0).remaining == 60.0
