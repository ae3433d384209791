"""The Raft codec round-trips every message type and rejects malformed peer input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.node.raft_codec import CodecError, decode_messages, encode_messages
from shoal.raft import (
    AppendEntries,
    AppendResponse,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    Snapshot,
    TimeoutNow,
    VoteResponse,
)

ids = st.sampled_from(["n1", "n2", "n3"])
terms = st.integers(min_value=0, max_value=2**40)
indices = st.integers(min_value=1, max_value=2**40)
confs = st.builds(
    lambda voters, learners: ConfState(frozenset(voters), frozenset(learners) - frozenset(voters)),
    st.sets(ids),
    st.sets(st.sampled_from(["n4", "n5"])),
)
changes = st.builds(ConfChange, op=st.sampled_from(list(ConfChangeOp)), node=ids, result=confs)
entries = st.builds(
    Entry, term=terms, index=indices, data=st.binary(max_size=32), change=st.none() | changes
)
snapshots = st.builds(Snapshot, index=terms, term=terms, conf=confs, data=st.binary(max_size=64))
common = {"src": ids, "dst": ids, "term": terms}
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        AppendEntries,
        **common,
        prev_index=terms,
        prev_term=terms,
        entries=st.lists(entries, max_size=4).map(tuple),
        commit=terms,
    ),
    st.builds(
        AppendResponse,
        **common,
        index=terms,
        reject=st.booleans(),
        hint_index=terms,
        hint_term=terms,
    ),
    st.builds(
        RequestVote,
        **common,
        last_index=terms,
        last_term=terms,
        pre=st.booleans(),
        transfer=st.booleans(),
    ),
    st.builds(VoteResponse, **common, granted=st.booleans(), pre=st.booleans()),
    st.builds(Heartbeat, **common, commit=terms, read_seq=terms),
    st.builds(HeartbeatResponse, **common, read_seq=terms),
    st.builds(InstallSnapshot, **common, snapshot=snapshots),
    st.builds(TimeoutNow, **common),
    st.builds(ReadIndexRequest, **common, context=st.binary(max_size=16)),
    st.builds(ReadIndexResponse, **common, index=terms, context=st.binary(max_size=16)),
)


@given(st.lists(messages, max_size=6))
def test_every_message_round_trips(batch: list[Message]) -> None:
    assert decode_messages(encode_messages(batch)) == batch


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x91\x90",
        b"\x91\x92\x00\x01",
        b"\x91\x95\x63abcd",
        b"\x91\xa3abc",
        b"\x91\x91\xff",
    ],
)
def test_malformed_batches_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_messages(data)
