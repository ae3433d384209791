"""`--force-new-cluster`: make a member the only voter of a new cluster, keeping its data.

When a majority of the voters is gone for good (or a configuration change left the
quorum unreachable), no entry can commit again, so no ordinary membership change can
repair the cluster. The operator restarts the member holding the most data with
`--force-new-cluster` (etcd's flag of the same name):

1. Every entry in its log is applied on top of its newest snapshot -- committed or not:
   an entry beyond the persisted commit index may still have been acknowledged (the
   commit index rides along with the next fsync), and this member is now the only
   judge. Membership changes in those entries are dropped.
2. The result is saved as a snapshot at the last index whose configuration is this
   member alone; the WAL is compacted to it, and the hard state keeps the term.

The member then elects itself at once, like any cluster of one; others join it again
as learners (`--join`). What it never had -- writes committed on the lost majority only
-- is lost, which is why this is an operator's decision, logged loudly.
"""

from __future__ import annotations

import contextlib

from ..kv import KeyValueStore, KvError
from ..kv import restore as restore_kv
from ..kv import snapshot as snapshot_kv
from ..raft import ConfState, HardState, Snapshot
from .command_codec import decode_command
from .storage import MemberStorage, Restored


def force_new_cluster(
    storage: MemberStorage, restored: Restored, name: str, now: float
) -> tuple[Snapshot, HardState]:
    """Rewrite `storage` (opened, giving `restored`) as a one-member cluster of `name`;
    the snapshot and hard state a `RawNode` starts from."""
    snapshot = restored.snapshot
    kv = restore_kv(snapshot.data) if snapshot.data else KeyValueStore()
    index, term = snapshot.index, snapshot.term
    for entry in restored.entries:
        if entry.data and entry.change is None:
            # A command the store refused was refused on every member the first time too.
            with contextlib.suppress(KvError):
                kv.apply(decode_command(entry.data), now)
        index, term = entry.index, entry.term
    forced = Snapshot(
        index=index,
        term=term,
        conf=ConfState(voters=frozenset({name})),
        data=snapshot_kv(kv),
    )
    hard = HardState(
        term=max(restored.hard_state.term, term), vote=restored.hard_state.vote, commit=index
    )
    storage.save_snapshot(forced)
    storage.wal.append([], hard)
    storage.wal.sync()
    return forced, hard


__all__ = ["force_new_cluster"]
