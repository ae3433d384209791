"""KV commands survive the log's byte format (node/command_codec.py), the lease report included."""

from __future__ import annotations

import pytest

from shoal.kv import (
    Command,
    Compact,
    Delete,
    LeaseCheckpoint,
    LeaseCheckpoints,
    LeaseGrant,
    LeaseRevoke,
    Put,
)
from shoal.node.command_codec import decode_command, encode_command
from shoal.node.raft_codec import CodecError

COMMANDS: list[Command] = [
    Put(key=b"k", value=b"v", lease=7, prev_kv=True),
    Delete(key=b"a", range_end=b"b"),
    LeaseGrant(id=3, ttl_seconds=5),
    LeaseRevoke(id=3),
    LeaseCheckpoint(id=3, remaining_seconds=2.5),
    LeaseCheckpoints(checkpoints=()),
    LeaseCheckpoints(
        checkpoints=tuple(LeaseCheckpoint(id=i, remaining_seconds=i / 3) for i in range(1, 500))
    ),
    Compact(revision=9),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_round_trip(command: Command) -> None:
    assert decode_command(encode_command(command)) == command


def test_a_malformed_report_is_a_codec_error() -> None:
    from shoal.node.raft_codec import pack

    with pytest.raises(CodecError):
        decode_command(pack([8, [[1, -1.0]]]))
