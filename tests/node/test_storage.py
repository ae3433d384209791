"""Snapshot files and `MemberStorage` on real files, driven by a real `RawNode`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shoal.node.snapfile import SnapshotFiles
from shoal.node.storage import MemberStorage, Restored, SnapshotMismatchError
from shoal.raft import (
    ConfState,
    HardState,
    InstallSnapshot,
    RaftConfig,
    RawNode,
    Ready,
    Role,
    Snapshot,
)

VOTERS = ConfState(voters=frozenset({"n1"}))
BOOT = Snapshot(conf=VOTERS)


def snap(index: int, term: int, data: bytes = b"state") -> Snapshot:
    return Snapshot(index=index, term=term, conf=VOTERS, data=data)


# -- snapshot files ---------------------------------------------------------------------------


def test_a_saved_snapshot_reads_back_from_its_named_file(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path / "snap")
    path = files.save(snap(42, 3))
    assert path.name == f"{3:016x}-{42:016x}.snap"
    assert [p.name for p in (tmp_path / "snap").iterdir()] == [path.name]  # no temp left
    assert SnapshotFiles(tmp_path / "snap").load_newest() == snap(42, 3)


def test_only_the_newest_two_snapshots_are_kept(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path)
    for index in (10, 20, 30, 40):
        files.save(snap(index, 2))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{2:016x}-{30:016x}.snap", f"{2:016x}-{40:016x}.snap"]
    assert files.load_newest() == snap(40, 2)
    assert files.skipped == []


def test_a_damaged_newest_snapshot_falls_back_to_the_older_one(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path)
    files.save(snap(10, 1))
    newest = files.save(snap(20, 1, data=b"x" * 100))
    data = bytearray(newest.read_bytes())
    data[-5] ^= 1
    newest.write_bytes(bytes(data))
    assert files.load_newest() == snap(10, 1)
    assert files.skipped == [(newest, "crc mismatch")]
    newest.write_bytes(b"junk")
    assert files.load_newest() == snap(10, 1)
    assert "bad magic" in files.skipped[0][1]


def test_no_valid_snapshot_is_none(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path / "absent")
    assert files.load_newest() is None
    files.save(snap(5, 1)).write_bytes(b"SHOALSN1")
    assert files.load_newest() is None and len(files.skipped) == 1


def test_a_file_whose_name_disagrees_with_its_contents_is_damaged(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path)
    path = files.save(snap(5, 1))
    path.rename(tmp_path / f"{1:016x}-{6:016x}.snap")
    assert files.load_newest() is None
    assert "not its name's" in files.skipped[0][1]


def test_leftover_temp_files_are_removed_on_load(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path)
    files.save(snap(5, 1))
    leftover = tmp_path / f"{1:016x}-{9:016x}.snap.tmp"
    leftover.write_bytes(b"half a snapshot")
    assert files.load_newest() == snap(5, 1)
    assert not leftover.exists()


# -- member storage driven by a real RawNode --------------------------------------------------


def drive(node: RawNode, storage: MemberStorage) -> None:
    """The driver's loop, minus the network: persist -> (apply) -> advance."""
    while node.has_ready():
        rd = node.ready()
        storage.persist(rd)
        node.advance(rd)


def start(directory: Path, **kw: int) -> tuple[MemberStorage, RawNode, Restored]:
    storage = MemberStorage(directory, **kw)
    restored = storage.open()
    if restored.is_empty:  # a new one-member cluster: persist the initial configuration
        storage.save_snapshot(BOOT)
        restored = Restored(HardState(), BOOT, ())
    node = RawNode(
        RaftConfig(id="n1"),
        random.Random(1),
        hard_state=restored.hard_state,
        snapshot=restored.snapshot,
        entries=restored.entries,
    )
    return storage, node, restored


def elect(node: RawNode, storage: MemberStorage) -> None:
    node.campaign()
    drive(node, storage)
    assert node.role is Role.LEADER


def test_a_member_restarts_with_its_log_and_commit_index(tmp_path: Path) -> None:
    storage, node, _ = start(tmp_path)
    elect(node, storage)
    for i in range(20):
        node.propose(f"put {i}".encode())
        drive(node, storage)
    log, status = node.log_entries(), node.status()
    assert status.commit == 21  # the leader's no-op and 20 proposals
    storage.close()

    storage, again, restored = start(tmp_path)
    assert (tmp_path / "wal").is_dir() and (tmp_path / "snap").is_dir()
    assert restored.snapshot == BOOT
    assert restored.entries == log
    assert restored.hard_state == HardState(term=status.term, vote="n1", commit=21)
    assert again.log_entries() == log
    assert again.status().commit == 21
    elect(again, storage)  # and it carries on in a later term
    index = again.propose(b"after restart")
    drive(again, storage)
    assert again.status().commit == index == 23
    storage.close()


def test_a_hundred_proposals_in_one_ready_cost_one_fsync(tmp_path: Path) -> None:
    storage, node, _ = start(tmp_path)
    elect(node, storage)
    for i in range(100):
        node.propose(f"put {i}".encode())
    rd = node.ready()
    assert len(rd.entries) == 100
    before = storage.syncs
    storage.persist(rd)
    assert storage.syncs == before + 1
    node.advance(rd)
    drive(node, storage)
    storage.close()
    storage, again, restored = start(tmp_path)
    assert len(restored.entries) == 101
    assert again.status().commit == 101
    storage.close()


def test_a_ready_with_nothing_to_persist_costs_no_fsync(tmp_path: Path) -> None:
    storage, _, _ = start(tmp_path)
    before = storage.syncs
    storage.persist(Ready(None, None, None, (), (), (), (), ()))
    assert storage.syncs == before
    storage.close()


def test_a_commit_index_only_change_is_written_without_an_fsync(tmp_path: Path) -> None:
    """Like etcd's MustSync: the commit index can be re-learned, so it rides along with the
    next fsync instead of costing one of its own; close() still makes it durable."""
    storage, node, _ = start(tmp_path)
    elect(node, storage)
    before = storage.syncs
    hard = HardState(term=node.term, vote=node.id, commit=node.status().commit)
    storage.persist(Ready(None, hard, None, (), (), (), (), (), must_sync=False))
    assert storage.syncs == before
    storage.close()
    storage, _, restored = start(tmp_path)
    assert restored.hard_state == hard
    storage.close()


def test_a_snapshot_the_member_takes_compacts_the_wal(tmp_path: Path) -> None:
    storage, node, _ = start(tmp_path, segment_bytes=1024)
    elect(node, storage)
    for i in range(100):
        node.propose(b"v" * 50 + str(i).encode())
        drive(node, storage)
    segments = len(storage.wal.segment_paths)
    assert segments > 3
    snapshot = node.create_snapshot(80, b"state at 80")
    storage.save_snapshot(snapshot)
    assert len(storage.wal.segment_paths) < segments
    for i in range(5):
        node.propose(f"more {i}".encode())
    drive(node, storage)
    log = node.log_entries()
    storage.close()

    storage, again, restored = start(tmp_path, segment_bytes=1024)
    assert restored.snapshot == snapshot
    assert restored.entries == log and log[0].index == 81
    assert again.status().commit == 106
    storage.close()


def test_a_snapshot_installed_from_the_leader_replaces_the_log(tmp_path: Path) -> None:
    storage = MemberStorage(tmp_path)
    assert storage.open().is_empty
    follower = RawNode(RaftConfig(id="n2"), random.Random(2))  # joining: starts empty
    leaders = ConfState(voters=frozenset({"n1", "n2"}))
    installed = Snapshot(index=50, term=2, conf=leaders, data=b"kv")
    follower.step(InstallSnapshot(src="n1", dst="n2", term=2, snapshot=installed))
    rd = follower.ready()
    assert rd.snapshot == installed
    storage.persist(rd)
    follower.advance(rd)
    storage.close()
    storage = MemberStorage(tmp_path)
    restored = storage.open()
    storage.close()
    assert restored.snapshot == installed
    assert restored.entries == ()
    assert restored.hard_state.term == 2 and restored.hard_state.commit == 50
    again = RawNode(
        RaftConfig(id="n2"),
        random.Random(2),
        hard_state=restored.hard_state,
        snapshot=restored.snapshot,
    )
    assert again.status().commit == 50 and again.conf == leaders


def test_a_wal_compacted_past_every_valid_snapshot_refuses_to_start(tmp_path: Path) -> None:
    storage, node, _ = start(tmp_path)
    elect(node, storage)
    for i in range(10):
        node.propose(f"{i}".encode())
        drive(node, storage)
    storage.save_snapshot(node.create_snapshot(5, b"five"))
    newest = node.create_snapshot(9, b"nine")
    storage.save_snapshot(newest)
    storage.close()
    path = tmp_path / "snap" / f"{newest.term:016x}-{newest.index:016x}.snap"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(SnapshotMismatchError) as info:
        MemberStorage(tmp_path).open()
    message = str(info.value)
    assert "compacted to index 9" in message and "at index 5" in message
    assert str(path) in message and "refusing to start" in message


def test_a_crash_between_snapshot_file_and_wal_marker_is_finished_on_open(
    tmp_path: Path,
) -> None:
    storage, node, _ = start(tmp_path)
    elect(node, storage)
    for i in range(10):
        node.propose(f"{i}".encode())
        drive(node, storage)
    log = node.log_entries()
    snapshot = node.create_snapshot(8, b"eight")
    storage.close()
    SnapshotFiles(tmp_path / "snap").save(snapshot)  # ...and the crash came here

    storage, again, restored = start(tmp_path)
    assert restored.snapshot == snapshot
    assert restored.entries == tuple(e for e in log if e.index > 8)
    assert again.status().commit == 11
    storage.close()
    # the WAL now carries the marker itself
    storage = MemberStorage(tmp_path)
    assert storage.open().entries == restored.entries
    assert storage.wal.last_index == 11
    storage.close()


def test_storage_refuses_use_before_open(tmp_path: Path) -> None:
    storage = MemberStorage(tmp_path)
    with pytest.raises(ValueError, match="not open"):
        storage.persist(Ready(None, HardState(term=1), None, (), (), (), (), ()))
