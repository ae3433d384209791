"""Hypothesis properties: the store against a naive model, snapshots, and watch replay."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.kv import (
    TO_END,
    Command,
    Compact,
    Compacted,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    EventType,
    InvalidCommand,
    KeyValue,
    KeyValueStore,
    KvError,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    Txn,
    TxnOp,
    WatchFilter,
    events_since,
    in_range,
    prefix_end,
    restore,
    snapshot,
)

KEYS = [b"a", b"ab", b"abc", b"b", b"ba", b"c"]
keys = st.sampled_from(KEYS)
values = st.binary(max_size=3)
NO_LEASE = st.just(0)


@st.composite
def deletes(draw: st.DrawFn) -> Delete:
    key = draw(keys)
    kind = draw(st.sampled_from(["one", "prefix", "to_end"]))
    end = {"one": None, "prefix": prefix_end(key), "to_end": TO_END}[kind]
    return Delete(key=key, range_end=end)


def puts(leases: st.SearchStrategy[int] = NO_LEASE) -> st.SearchStrategy[Put]:
    return st.builds(lambda k, v, lease: Put(key=k, value=v, lease=lease), keys, values, leases)


compares = st.one_of(
    st.builds(
        lambda k, op, v: Compare(key=k, target=CompareTarget.VALUE, op=op, value=v),
        keys,
        st.sampled_from(CompareOp),
        values,
    ),
    st.builds(
        lambda k, t, op, v: Compare(key=k, target=t, op=op, value=v),
        keys,
        st.sampled_from(
            [CompareTarget.VERSION, CompareTarget.CREATE_REVISION, CompareTarget.MOD_REVISION]
        ),
        st.sampled_from(CompareOp),
        st.integers(0, 8),
    ),
    st.builds(
        lambda k, op, v: Compare(key=k, target=CompareTarget.EXISTS, op=op, value=v),
        keys,
        st.sampled_from([CompareOp.EQ, CompareOp.NE]),
        st.booleans(),
    ),
)


@st.composite
def txns(draw: st.DrawFn, leases: st.SearchStrategy[int] = NO_LEASE) -> Txn | Put:
    ops: st.SearchStrategy[TxnOp] = st.one_of(
        puts(leases), deletes(), st.builds(lambda k: Range(key=k), keys)
    )
    try:
        return Txn(
            compares=tuple(draw(st.lists(compares, max_size=2))),
            success=tuple(draw(st.lists(ops, max_size=3))),
            failure=tuple(draw(st.lists(ops, max_size=3))),
        )
    except InvalidCommand:  # a put meeting a delete or another put of the same key
        return draw(puts(leases))


kv_commands = st.lists(st.one_of(puts(), deletes(), txns()), max_size=30)

lease_ids = st.integers(0, 3)
lease_commands = st.lists(
    st.one_of(
        puts(lease_ids),
        deletes(),
        txns(lease_ids),
        st.builds(
            lambda i, ttl: LeaseGrant(id=i, ttl_seconds=ttl), st.integers(1, 3), st.integers(1, 50)
        ),
        st.builds(lambda i: LeaseRevoke(id=i), st.integers(1, 3)),
    ),
    max_size=30,
)


@dataclass
class Model:
    """The obvious implementation: a dict, a counter and a copy of the state per revision."""

    revision: int = 1
    data: dict[bytes, KeyValue] = field(default_factory=dict)
    states: dict[int, dict[bytes, KeyValue]] = field(default_factory=lambda: {1: {}})

    def put(self, op: Put, rev: int) -> None:
        prev = self.data.get(op.key)
        create, version = (prev.create_revision, prev.version + 1) if prev else (rev, 1)
        self.data[op.key] = KeyValue(
            key=op.key, value=op.value, create_revision=create, mod_revision=rev, version=version
        )

    def matching(self, op: Delete) -> list[bytes]:
        return [k for k in self.data if in_range(k, op.key, op.range_end)]

    def holds(self, c: Compare) -> bool:
        kv = self.data.get(c.key)
        if c.target is CompareTarget.EXISTS:
            actual: object = kv is not None
        elif c.target is CompareTarget.VALUE:
            if kv is None:
                return False
            actual = kv.value
        else:
            actual = getattr(kv, c.target.value) if kv else 0
        a, b = actual, c.value
        return {
            CompareOp.EQ: a == b,
            CompareOp.NE: a != b,
            CompareOp.LT: a < b,  # type: ignore[operator]
            CompareOp.GT: a > b,  # type: ignore[operator]
        }[c.op]

    def apply(self, command: Command) -> None:
        if isinstance(command, Put):
            ops: tuple[TxnOp, ...] = (command,)
        elif isinstance(command, Delete):
            ops = (command,)
        else:
            assert isinstance(command, Txn)
            ok = all(self.holds(c) for c in command.compares)
            ops = command.success if ok else command.failure
        writes = any(
            isinstance(o, Put) or (isinstance(o, Delete) and self.matching(o)) for o in ops
        )
        if not writes:
            return
        self.revision += 1
        for op in ops:
            if isinstance(op, Put):
                self.put(op, self.revision)
            elif isinstance(op, Delete):
                for k in self.matching(op):
                    del self.data[k]
        self.states[self.revision] = dict(self.data)


def state(store: KeyValueStore, revision: int | None = None) -> dict[bytes, KeyValue]:
    return {kv.key: kv for kv in store.range(b"\x00", TO_END, revision=revision).kvs}


@settings(max_examples=150, deadline=None)
@given(kv_commands, st.integers(1, 40))
def test_store_matches_a_naive_model_at_every_revision(
    commands: list[Command], compact_at: int
) -> None:
    store, model = KeyValueStore(), Model()
    for command in commands:
        store.apply(command, 0.0)
        model.apply(command)
        assert store.revision == model.revision
        assert state(store) == model.data
    for rev, expected in model.states.items():
        assert state(store, rev) == expected
    compact_at = min(compact_at, store.revision)
    store.apply(Compact(revision=compact_at), 0.0)
    for rev, expected in model.states.items():
        if rev >= compact_at:
            assert state(store, rev) == expected
        else:
            try:
                state(store, rev)
            except Compacted:
                continue
            raise AssertionError(f"read at {rev} below compacted {compact_at} did not raise")


def apply_all(commands: list[Command]) -> KeyValueStore:
    store = KeyValueStore()
    for command in commands:
        before = (store.revision, state(store), store.leases.states())
        try:
            store.apply(command, 0.0)
        except KvError:
            assert (store.revision, state(store), store.leases.states()) == before
    return store


@settings(max_examples=150, deadline=None)
@given(lease_commands)
def test_snapshot_restore_preserves_everything_current(commands: list[Command]) -> None:
    store = apply_all(commands)
    copy = restore(snapshot(store))
    assert copy.revision == copy.compacted_revision == store.revision
    assert state(copy) == state(store)
    assert copy.leases.states() == store.leases.states()
    for lease_id in store.leases.ids():
        assert copy.leases.keys_of(lease_id) == store.leases.keys_of(lease_id)
    for kv in state(store).values():
        if kv.lease:
            assert kv.key in store.leases.keys_of(kv.lease)


@settings(max_examples=150, deadline=None)
@given(lease_commands, st.integers(0, 10))
def test_replaying_events_since_r_onto_state_at_r_minus_1_gives_now(
    commands: list[Command], compact_back: int
) -> None:
    store = apply_all(commands)
    if store.revision > 1 and compact_back:
        store.apply(Compact(revision=max(1, store.revision - compact_back)), 0.0)
    now = state(store)
    for start in range(store.compacted_revision + 1, store.revision + 2):
        if start - 1 < max(1, store.compacted_revision):
            continue
        replayed = state(store, start - 1)
        last = 0
        for event in events_since(store, start, WatchFilter.all()):
            assert event.revision >= max(start, last)
            last = event.revision
            if event.type is EventType.PUT:
                replayed[event.kv.key] = event.kv
            else:
                del replayed[event.kv.key]
        assert replayed == now
