"""`--force-new-cluster` on real files (node/recovery.py): the member's whole log is kept,
membership changes in it are dropped, and it reopens as a cluster of one."""

from __future__ import annotations

from pathlib import Path

from shoal.kv import Put
from shoal.kv import restore as restore_kv
from shoal.node.command_codec import encode_command
from shoal.node.recovery import force_new_cluster
from shoal.node.storage import MemberStorage
from shoal.raft import ConfChange, ConfChangeOp, ConfState, Entry, HardState, Snapshot


def put(key: bytes) -> bytes:
    return encode_command(Put(key=key, value=b"v"))


def test_forcing_keeps_every_write_and_makes_this_member_the_only_voter(tmp_path: Path) -> None:
    storage = MemberStorage(tmp_path)
    storage.open()
    storage.save_snapshot(Snapshot(conf=ConfState(voters=frozenset({"n1"}))))
    stranded = ConfState(voters=frozenset({"n1", "n2"}))
    entries = [
        Entry(term=2, index=1, data=put(b"committed")),
        Entry(term=2, index=2, change=ConfChange(ConfChangeOp.ADD_VOTER, "n2", stranded)),
        Entry(term=2, index=3, data=put(b"maybe-acknowledged")),  # beyond the commit index
    ]
    storage.wal.append(entries, HardState(term=2, vote="n1", commit=1))
    storage.wal.sync()
    storage.close()

    storage = MemberStorage(tmp_path)
    restored = storage.open()
    snapshot, hard = force_new_cluster(storage, restored, "n1", now=0.0)
    storage.close()
    assert (snapshot.index, snapshot.term) == (3, 2)
    assert snapshot.conf == ConfState(voters=frozenset({"n1"}))
    assert hard == HardState(term=2, vote="n1", commit=3)

    reopened = MemberStorage(tmp_path)
    again = reopened.open()  # what the member starts from, now and later
    reopened.close()
    assert again.snapshot == snapshot and again.entries == () and again.hard_state == hard
    kv = restore_kv(again.snapshot.data)
    assert kv.get(b"committed") is not None and kv.get(b"maybe-acknowledged") is not None
