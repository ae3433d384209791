"""`shoal.raft.describe`: every value has one deterministic line, and every message type
is covered (the golden transcripts in testdata/ depend on both)."""

from __future__ import annotations

import dataclasses

import pytest

from shoal.raft import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendResponse,
    Commit,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    Ready,
    RequestVote,
    Role,
    Snapshot,
    SoftState,
    TimeoutNow,
    VoteResponse,
    describe_entries,
    describe_entry,
    describe_message,
    describe_ready,
)
from shoal.raft.describe import MAX_DATA_SHOWN, describe_data

CONF = ConfState(voters=frozenset({"n3", "n1", "n2"}), learners=frozenset({"n4"}))
CHANGE = ConfChange(op=ConfChangeOp.ADD_LEARNER, node="n4", result=CONF)

EXAMPLES: list[tuple[Message, str]] = [
    (
        AppendEntries(
            src="n1",
            dst="n2",
            term=2,
            prev_index=4,
            prev_term=1,
            entries=(Entry(2, 5), Entry(2, 6, b"x")),
            commit=4,
        ),
        'n1->n2 AppendEntries term=2 log=1/4 commit=4 entries=[2/5 noop, 2/6 "x"]',
    ),
    (
        AppendEntries(src="n1", dst="n2", term=2, prev_index=6, prev_term=2, entries=(), commit=6),
        "n1->n2 AppendEntries term=2 log=2/6 commit=6",
    ),
    (AppendResponse(src="n2", dst="n1", term=2, index=6), "n2->n1 AppendResponse term=2 index=6"),
    (
        AppendResponse(src="n2", dst="n1", term=2, index=6, reject=True, hint_index=3, hint_term=1),
        "n2->n1 AppendResponse term=2 index=6 rejected hint=1/3",
    ),
    (
        RequestVote(src="n3", dst="n1", term=3, last_index=6, last_term=2, pre=True),
        "n3->n1 RequestVote term=3 log=2/6 pre",
    ),
    (
        RequestVote(src="n3", dst="n1", term=3, last_index=6, last_term=2, transfer=True),
        "n3->n1 RequestVote term=3 log=2/6 transfer",
    ),
    (
        VoteResponse(src="n1", dst="n3", term=3, granted=False, pre=True),
        "n1->n3 VoteResponse term=3 rejected pre",
    ),
    (VoteResponse(src="n1", dst="n3", term=3, granted=True), "n1->n3 VoteResponse term=3 granted"),
    (Heartbeat(src="n1", dst="n2", term=2, commit=6), "n1->n2 Heartbeat term=2 commit=6"),
    (
        Heartbeat(src="n1", dst="n2", term=2, commit=6, read_seq=3),
        "n1->n2 Heartbeat term=2 commit=6 read_seq=3",
    ),
    (Commit(src="n1", dst="n2", term=2, commit=7), "n1->n2 Commit term=2 commit=7"),
    (HeartbeatResponse(src="n2", dst="n1", term=2), "n2->n1 HeartbeatResponse term=2"),
    (
        HeartbeatResponse(src="n2", dst="n1", term=2, read_seq=3),
        "n2->n1 HeartbeatResponse term=2 read_seq=3",
    ),
    (
        InstallSnapshot(
            src="n1", dst="n3", term=2, snapshot=Snapshot(index=6, term=2, conf=CONF, data=b"s")
        ),
        'n1->n3 InstallSnapshot term=2 snapshot=2/6 voters=(n1,n2,n3) learners=(n4) data="s"',
    ),
    (TimeoutNow(src="n1", dst="n2", term=2), "n1->n2 TimeoutNow term=2"),
    (
        ReadIndexRequest(src="n2", dst="n1", term=2, context=b"r1"),
        'n2->n1 ReadIndexRequest term=2 context="r1"',
    ),
    (
        ReadIndexResponse(src="n1", dst="n2", term=2, index=6, context=b"r1"),
        'n1->n2 ReadIndexResponse term=2 index=6 context="r1"',
    ),
]


@pytest.mark.parametrize(("message", "text"), EXAMPLES, ids=[t for _, t in EXAMPLES])
def test_describe_message(message: Message, text: str) -> None:
    assert describe_message(message) == text


def test_every_message_type_has_an_example() -> None:
    assert {type(m) for m, _ in EXAMPLES} == set(MESSAGE_TYPES)


def test_an_undescribed_message_type_raises() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Gossip(Message):
        pass

    with pytest.raises(TypeError, match="no description for message type Gossip"):
        describe_message(Gossip(src="n1", dst="n2", term=1))


def test_describe_entries() -> None:
    entries = [
        Entry(1, 1),
        Entry(1, 2, b"a b"),
        Entry(2, 3, change=CHANGE),
        Entry(2, 4, change=dataclasses.replace(CHANGE, context=b"why")),
    ]
    assert describe_entries(entries) == "\n".join(
        [
            "1/1 noop",
            '1/2 "a b"',
            "2/3 conf add-learner n4 -> voters=(n1,n2,n3) learners=(n4)",
            '2/4 conf add-learner n4 -> voters=(n1,n2,n3) learners=(n4) context="why"',
        ]
    )
    assert describe_entry(Entry(3, 9, b'\x00"\\\n')) == '3/9 "\\x00\\"\\\\\\x0a"'


def test_long_data_is_cut_with_its_length() -> None:
    data = b"x" * (MAX_DATA_SHOWN + 2)
    assert describe_data(data) == '"' + "x" * MAX_DATA_SHOWN + f'"...({len(data)} bytes)'
    assert describe_data(b"x" * MAX_DATA_SHOWN) == '"' + "x" * MAX_DATA_SHOWN + '"'


def test_describe_ready_lists_the_non_empty_parts_in_handling_order() -> None:
    rd = Ready(
        soft_state=SoftState(leader="n1", role=Role.LEADER, term=2),
        hard_state=HardState(term=2, vote="n1", commit=5),
        snapshot=None,
        entries=(Entry(2, 6, b"x"),),
        messages=(Heartbeat(src="n1", dst="n2", term=2, commit=5),),
        persisted_messages=(),
        committed_entries=(Entry(2, 5),),
        read_states=(ReadState(5, b"r"),),
        must_sync=True,
    )
    assert describe_ready(rd).split("\n") == [
        "Ready must_sync=true:",
        "SoftState leader=n1 role=leader term=2",
        "HardState term=2 vote=n1 commit=5",
        "Entries:",
        '2/6 "x"',
        "Messages:",
        "n1->n2 Heartbeat term=2 commit=5",
        "CommittedEntries:",
        "2/5 noop",
        "ReadStates:",
        'index=5 context="r"',
    ]
