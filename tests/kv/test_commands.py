"""Commands validate themselves on construction, with messages that say what is wrong."""

from __future__ import annotations

import re

import pytest

from shoal.kv import (
    MAX_KEY_BYTES,
    MAX_LEASE_TTL_SECONDS,
    MAX_TXN_OPS,
    MAX_VALUE_BYTES,
    Compact,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    InvalidCommand,
    KvError,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRevoke,
    LimitExceeded,
    Put,
    Range,
    Txn,
)


def test_valid_commands_construct() -> None:
    Put(key=b"a", value=b"", lease=3, prev_kv=True)
    Delete(key=b"a", range_end=b"b")
    Delete(key=b"a", range_end=b"\x00")
    Txn(
        compares=(Compare(key=b"a", target=CompareTarget.EXISTS, op=CompareOp.EQ, value=True),),
        success=(Put(key=b"a", value=b"1"), Range(key=b"b")),
        failure=(Delete(key=b"a"),),
    )
    LeaseGrant(id=1, ttl_seconds=10)
    LeaseRevoke(id=1)
    LeaseCheckpoint(id=1, remaining_seconds=2.5)
    Compact(revision=1)


def test_commands_are_frozen_and_keyword_only() -> None:
    put = Put(key=b"a", value=b"b")
    with pytest.raises(AttributeError):
        put.key = b"c"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Put(b"a", b"b")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Put(key=b"", value=b"v"), "key must not be empty"),
        (lambda: Put(key="a", value=b"v"), "key must be bytes, got str"),  # type: ignore[arg-type]
        (lambda: Put(key=b"a", value="v"), "value must be bytes, got str"),  # type: ignore[arg-type]
        (lambda: Put(key=b"a", value=b"v", lease=-1), "lease must be >= 0, got -1"),
        (lambda: Put(key=b"a", value=b"v", lease=True), "lease must be an int, got bool"),
        (lambda: Delete(key=b""), "key must not be empty"),
        (lambda: Delete(key=b"b", range_end=b"a"), "range_end b'a' must be greater than key b'b'"),
        (lambda: Delete(key=b"b", range_end=b"b"), "range_end b'b' must be greater than key"),
        (lambda: Range(key=b"a", limit=-2), "limit must be >= 0, got -2"),
        (lambda: LeaseGrant(id=1, ttl_seconds=0), "ttl_seconds must be > 0, got 0"),
        (lambda: LeaseGrant(id=1, ttl_seconds=-5), "ttl_seconds must be > 0, got -5"),
        (lambda: LeaseGrant(id=1, ttl_seconds=1.5), "ttl_seconds must be an int, got float"),  # type: ignore[arg-type]
        (lambda: LeaseGrant(id=0, ttl_seconds=5), "lease id must be > 0 (0 means no lease)"),
        (lambda: LeaseRevoke(id=-1), "lease id must be >= 0, got -1"),
        (lambda: LeaseCheckpoint(id=1, remaining_seconds=0), "remaining_seconds must be > 0"),
        (lambda: Compact(revision=0), "revision must be >= 1, got 0"),
        (
            lambda: Compare(key=b"a", target=CompareTarget.VALUE, op=CompareOp.EQ, value=1),
            "compare on value needs bytes, got int",
        ),
        (
            lambda: Compare(key=b"a", target=CompareTarget.VERSION, op=CompareOp.EQ, value=b"1"),
            "compare on version needs an int, got bytes",
        ),
        (
            lambda: Compare(key=b"a", target=CompareTarget.EXISTS, op=CompareOp.LT, value=True),
            "compare on exists allows only == and !=, got <",
        ),
        (
            lambda: Compare(key=b"a", target=CompareTarget.EXISTS, op=CompareOp.EQ, value=1),
            "compare on exists needs a bool, got int",
        ),
        (
            lambda: Txn(success=(Put(key=b"a", value=b"1"), Put(key=b"a", value=b"2"))),
            "txn success puts key b'a' more than once",
        ),
        (
            lambda: Txn(failure=(Put(key=b"ab", value=b"1"), Delete(key=b"a", range_end=b"b"))),
            "txn failure both puts and deletes key b'ab' in one revision",
        ),
        (lambda: Txn(success=[Put(key=b"a", value=b"1")]), "txn success must be a tuple, got list"),  # type: ignore[arg-type]
        (lambda: Txn(success=(LeaseRevoke(id=1),)), "txn success op must be Put, Delete or Range"),  # type: ignore[arg-type]
    ],
)
def test_invalid_commands_say_what_is_wrong(make: object, message: str) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(message)) as info:
        make()  # type: ignore[operator]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, KvError)


def test_key_limit() -> None:
    Put(key=b"k" * MAX_KEY_BYTES, value=b"")
    with pytest.raises(LimitExceeded) as info:
        Put(key=b"k" * (MAX_KEY_BYTES + 1), value=b"")
    assert str(info.value) == (
        f"key size in bytes is {MAX_KEY_BYTES + 1}, over the limit MAX_KEY_BYTES = {MAX_KEY_BYTES}"
    )
    assert (info.value.limit_name, info.value.actual) == ("MAX_KEY_BYTES", MAX_KEY_BYTES + 1)
    assert isinstance(info.value, ValueError)


def test_value_limit() -> None:
    Put(key=b"k", value=b"v" * MAX_VALUE_BYTES)
    with pytest.raises(LimitExceeded, match="value size in bytes is 1048577, over the limit"):
        Put(key=b"k", value=b"v" * (MAX_VALUE_BYTES + 1))


def test_txn_limits() -> None:
    ops = tuple(Put(key=b"k%d" % i, value=b"") for i in range(MAX_TXN_OPS + 1))
    Txn(success=ops[:MAX_TXN_OPS])
    with pytest.raises(LimitExceeded, match=f"txn failure op count is {MAX_TXN_OPS + 1}"):
        Txn(failure=ops)
    cmp = Compare(key=b"a", target=CompareTarget.VERSION, op=CompareOp.EQ, value=0)
    with pytest.raises(LimitExceeded, match="txn compare count is 129, over the limit MAX_TXN_OPS"):
        Txn(compares=(cmp,) * (MAX_TXN_OPS + 1))


def test_ttl_limit() -> None:
    with pytest.raises(LimitExceeded, match="MAX_LEASE_TTL_SECONDS"):
        LeaseGrant(id=1, ttl_seconds=MAX_LEASE_TTL_SECONDS + 1)
