"""The public surface of shoal.raft is pinned: changing it is a deliberate act (the node
imports only from this facade)."""

from __future__ import annotations

import shoal.raft

EXPECTED = {
    "MESSAGE_TYPES", "AppendEntries", "AppendResponse", "CompactedError", "ConfChange",
    "Commit", "ConfChangeOp", "ConfChangeRejected", "ConfState", "Entry", "HardState", "Heartbeat",
    "HeartbeatResponse", "InstallSnapshot", "MemberProgress", "Message", "NotLeader",
    "ProgressState", "ProposalRejected", "RaftConfig", "RaftError", "RawNode",
    "ReadIndexRequest", "ReadIndexResponse", "ReadState", "Ready", "RequestVote", "Role",
    "Snapshot", "SoftState", "Status", "TimeoutNow", "TransferInProgress", "UsageError",
    "VoteResponse", "describe_entries", "describe_entry", "describe_message",
    "describe_ready", "describe_status",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(shoal.raft.__all__) == EXPECTED
    assert len(shoal.raft.__all__) == len(EXPECTED)


def test_every_name_exists() -> None:
    for name in shoal.raft.__all__:
        assert hasattr(shoal.raft, name), name


def test_raft_config_lives_in_options() -> None:
    # Not in a module called config: that name belongs to the config center.
    assert shoal.raft.RaftConfig.__module__ == "shoal.raft.options"
