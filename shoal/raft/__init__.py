"""The Raft consensus core: pure, sans-IO, driven through `RawNode`.

See `rawnode.py` for the driving contract (persist -> send -> apply -> advance) and
`raft.py` for the protocol rules with the thesis sections they implement. Nothing in this
package does I/O, reads a clock or uses global randomness.
"""

from .options import RaftConfig
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
]
