"""The Raft consensus core: pure, sans-IO, driven through `RawNode`.

See `rawnode.py` for the driving contract (persist -> send -> apply -> advance) and
`raft.py` for the protocol rules with the thesis sections they implement, and
`describe.py` for the deterministic text of its values (golden traces, driver logs).
Nothing in this package does I/O, reads a clock or uses global randomness.
"""

from .describe import (
    describe_entries,
    describe_entry,
    describe_message,
    describe_ready,
    describe_status,
)
from .errors import (
    CompactedError,
    ConfChangeRejected,
    NotLeader,
    ProposalRejected,
    RaftError,
    TransferInProgress,
    UsageError,
)
from .messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendResponse,
    Commit,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from .options import RaftConfig
from .progress import ProgressState
from .rawnode import MemberProgress, RawNode, Ready, Status
from .types import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    HardState,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)

__all__ = [
    "MESSAGE_TYPES",
    "AppendEntries",
    "AppendResponse",
    "Commit",
    "CompactedError",
    "ConfChange",
    "ConfChangeOp",
    "ConfChangeRejected",
    "ConfState",
    "Entry",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "MemberProgress",
    "Message",
    "NotLeader",
    "ProgressState",
    "ProposalRejected",
    "RaftConfig",
    "RaftError",
    "RawNode",
    "ReadIndexRequest",
    "ReadIndexResponse",
    "ReadState",
    "Ready",
    "RequestVote",
    "Role",
    "Snapshot",
    "SoftState",
    "Status",
    "TimeoutNow",
    "TransferInProgress",
    "UsageError",
    "VoteResponse",
    "describe_entries",
    "describe_entry",
    "describe_message",
    "describe_ready",
    "describe_status",
]
