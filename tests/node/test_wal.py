"""The WAL on real files: round trips, overwrites, rotation, compaction, torn tails and
corruption, and a Hypothesis model check against a plain in-memory log."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.node.wal import WalContents, WalCorruptError, WriteAheadLog
from shoal.raft import ConfChange, ConfChangeOp, ConfState, Entry, HardState


def ents(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(term=term, index=i, data=f"{term}:{i}".encode()) for i in range(lo, hi + 1)]


def reopen(directory: Path, **kw: int) -> WalContents:
    wal, contents = WriteAheadLog.open(directory, **kw)
    wal.close()
    return contents


def test_open_creates_the_directory_and_starts_empty(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "wal"
    wal, contents = WriteAheadLog.open(directory)
    wal.close()
    assert directory.is_dir()
    assert contents == WalContents(HardState(), 0, 0, [], 0)
    assert [p.name for p in directory.iterdir()] == [f"{0:016x}-{1:016x}.wal"]


def test_entries_and_hard_state_round_trip(tmp_path: Path) -> None:
    change = ConfChange(ConfChangeOp.ADD_VOTER, "n2", ConfState(frozenset({"n1", "n2"})))
    entries = [*ents(1, 9, 1), Entry(term=1, index=10, change=change)]
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append(entries, HardState(term=1, vote="n1", commit=7))
    wal.sync()
    wal.close()
    contents = reopen(tmp_path)
    assert contents.entries == entries
    assert contents.hard_state == HardState(term=1, vote="n1", commit=7)
    assert contents.truncated_bytes == 0


def test_an_append_from_an_earlier_index_replaces_the_tail(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append(ents(1, 10, 1), HardState(term=1, commit=3))
    wal.sync()
    wal.append(ents(6, 8, 2), HardState(term=2, commit=5))
    wal.sync()
    wal.close()
    contents = reopen(tmp_path)
    assert contents.entries == ents(1, 5, 1) + ents(6, 8, 2)
    assert contents.hard_state == HardState(term=2, commit=5)


def test_an_append_that_leaves_a_hole_is_refused(tmp_path: Path) -> None:
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append(ents(1, 3, 1), None)
    with pytest.raises(ValueError, match="do not fit"):
        wal.append(ents(5, 6, 1), None)
    wal.close()


def test_rotation_spreads_the_log_over_segments_and_replays_them_in_order(
    tmp_path: Path,
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=300)
    for lo in range(1, 200, 10):
        wal.append(ents(lo, lo + 9, 1 + lo // 50), HardState(term=1 + lo // 50, commit=lo))
        wal.sync()
    wal.append(ents(150, 152, 9), HardState(term=9, commit=149))
    wal.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) > 5
    seqs = [int(n[:16], 16) for n in names]
    firsts = [int(n[17:33], 16) for n in names]
    assert seqs == list(range(len(names)))
    assert firsts[0] == 1 and firsts[-1] == 153  # after the overwrite at 150
    contents = reopen(tmp_path, segment_bytes=300)
    expected = [e for lo in range(1, 150, 10) for e in ents(lo, lo + 9, 1 + lo // 50)]
    assert contents.entries == expected[:149] + ents(150, 152, 9)
    assert contents.hard_state == HardState(term=9, commit=149)


def test_mark_snapshot_drops_old_segments_after_sync_and_keeps_the_hard_state(
    tmp_path: Path,
) -> None:
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=300)
    wal.append(ents(1, 5, 1), HardState(term=1, vote="n1", commit=5))
    for lo in range(6, 100, 5):  # the hard state is written only once, into segment 0
        wal.append(ents(lo, lo + 4, 1), None)
    wal.sync()
    before = len(wal.segment_paths)
    wal.mark_snapshot(80, 1)
    assert len(wal.segment_paths) >= before  # nothing goes before the marker is durable
    wal.sync()
    after = wal.segment_paths
    assert len(after) < before
    assert not (tmp_path / f"{0:016x}-{1:016x}.wal").exists()
    wal.close()
    contents = reopen(tmp_path, segment_bytes=300)
    assert (contents.snapshot_index, contents.snapshot_term) == (80, 1)
    assert contents.entries == ents(81, 100, 1)
    assert contents.hard_state == HardState(term=1, vote="n1", commit=5)


def test_replay_accepts_the_hole_left_by_deleted_segments_once_a_marker_covers_it(
    tmp_path: Path,
) -> None:
    # Every append fills a segment, so each new segment starts with a copy of the marker
    # then in force (0): after compaction the oldest kept segment starts at entry 6, and the
    # next segment's copy of the old marker must not be taken for a claim about 1..5.
    wal, _ = WriteAheadLog.open(tmp_path, segment_bytes=50)
    for lo in (1, 6, 11):
        wal.append(ents(lo, lo + 4, 1), None)
    wal.mark_snapshot(7, 1)
    wal.sync()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == f"{1:016x}-{6:016x}.wal"
    wal.close()
    contents = reopen(tmp_path, segment_bytes=50)
    assert (contents.snapshot_index, contents.entries) == (7, ents(8, 15, 1))


def test_a_snapshot_that_does_not_match_the_log_replaces_all_of_it(tmp_path: Path) -> None:
    # A follower installing a leader's snapshot drops its whole log (thesis 5.1).
    wal, _ = WriteAheadLog.open(tmp_path)
    wal.append(ents(1, 10, 1), HardState(term=1, commit=2))
    wal.mark_snapshot(50, 3)
    wal.append(ents(51, 52, 3), HardState(term=3, commit=50))
    wal.close()
    contents = reopen(tmp_path)
    assert (contents.snapshot_index, contents.snapshot_term) == (50, 3)
    assert contents.entries == ents(51, 52, 3)
    # ...while one matching an entry keeps the entries after it.
    other = tmp_path / "other"
    wal, _ = WriteAheadLog.open(other)
    wal.append(ents(1, 10, 1), None)
    wal.mark_snapshot(6, 1)
    wal.close()
    assert reopen(other).entries == ents(7, 10, 1)


# -- torn tails and corruption ----------------------------------------------------------------


@dataclass
class Written:
    """A one-segment WAL written record by record, with the file size after each."""

    path: Path
    boundaries: list[int] = field(default_factory=list)
    states: list[tuple[list[Entry], HardState]] = field(default_factory=list)


def write_records(directory: Path, batches: int = 5) -> Written:
    wal, _ = WriteAheadLog.open(directory)
    (path,) = wal.segment_paths
    out = Written(path, [0], [([], HardState())])
    entries: list[Entry] = []
    for k in range(batches):
        batch = ents(3 * k + 1, 3 * k + 3, 1)
        entries = entries + batch
        wal.append(batch, None)
        wal.sync()
        out.boundaries.append(path.stat().st_size)
        out.states.append((entries, out.states[-1][1]))
        hs = HardState(term=1, vote="n1", commit=3 * k + 1)  # no zero byte at the end
        wal.append([], hs)
        wal.sync()
        out.boundaries.append(path.stat().st_size)
        out.states.append((entries, hs))
    wal.close()
    return out


def test_a_torn_tail_is_cut_at_the_last_good_record_wherever_the_tear_is(
    tmp_path: Path,
) -> None:
    written = write_records(tmp_path / "orig")
    b = written.boundaries
    cases = 0
    for j in range(len(b) - 1):
        span = b[j + 1] - b[j]
        for cut in sorted({1, 4, 8, 9, 12, span // 2, span - 1}):
            for zeros in (0, 4096):
                copy = tmp_path / f"cut-{j}-{cut}-{zeros}"
                shutil.copytree(tmp_path / "orig", copy)
                seg = copy / written.path.name
                data = seg.read_bytes()[: b[j] + cut] + bytes(zeros)
                seg.write_bytes(data)
                contents = reopen(copy)
                entries, hs = written.states[j]
                assert (contents.entries, contents.hard_state) == (entries, hs), (j, cut)
                assert contents.truncated_bytes == cut + zeros
                assert seg.stat().st_size == b[j]
                cases += 1
    assert cases > 100


def test_appends_after_recovering_a_torn_tail_survive_the_next_reopen(tmp_path: Path) -> None:
    written = write_records(tmp_path)
    b = written.boundaries
    written.path.write_bytes(written.path.read_bytes()[: b[6] + 5])
    wal, contents = WriteAheadLog.open(tmp_path)
    assert contents.truncated_bytes == 5
    assert contents.entries == ents(1, 9, 1)
    wal.append(ents(10, 12, 2), HardState(term=2, commit=11))
    wal.close()
    again = reopen(tmp_path)
    assert again.entries == ents(1, 9, 1) + ents(10, 12, 2)
    assert again.hard_state == HardState(term=2, commit=11)
    assert again.truncated_bytes == 0


def test_a_bad_final_record_with_only_zeros_after_it_is_a_torn_tail(tmp_path: Path) -> None:
    written = write_records(tmp_path)
    data = bytearray(written.path.read_bytes())
    data[written.boundaries[-2] + 10] ^= 0xFF
    written.path.write_bytes(bytes(data) + bytes(100))
    contents = reopen(tmp_path)
    assert contents.entries == written.states[-2][0]
    assert contents.truncated_bytes == written.boundaries[-1] - written.boundaries[-2] + 100


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_damaged_record_followed_by_good_ones_refuses_to_start(tmp_path: Path) -> None:
    written = write_records(tmp_path)
    offset = written.boundaries[4]
    flip(written.path, offset + 12)
    size = written.path.stat().st_size
    with pytest.raises(WalCorruptError) as info:
        WriteAheadLog.open(tmp_path)
    message = str(info.value)
    assert f"WAL corrupt: {written.path} at offset {offset}: crc mismatch" in message
    assert "refusing to start" in message
    assert info.value.offset == offset and info.value.path == written.path
    assert written.path.stat().st_size == size  # nothing was truncated


def test_a_length_damaged_to_run_past_eof_is_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    written = write_records(tmp_path)
    offset = written.boundaries[3]
    flip(written.path, offset + 2)  # the length's third byte: now far past the end
    with pytest.raises(WalCorruptError, match=f"at offset {offset}: record runs past"):
        WriteAheadLog.open(tmp_path)


def multi_segment(directory: Path) -> list[Path]:
    wal, _ = WriteAheadLog.open(directory, segment_bytes=200)
    for lo in range(1, 60, 5):
        wal.append(ents(lo, lo + 4, 1), HardState(term=1, commit=lo))
    paths = wal.segment_paths
    wal.close()
    assert len(paths) >= 3
    return paths


def test_damage_in_an_earlier_segment_refuses_to_start(tmp_path: Path) -> None:
    paths = multi_segment(tmp_path / "flip")
    size = paths[0].stat().st_size
    flip(paths[0], size - 3)  # even the final record of a non-last segment
    with pytest.raises(WalCorruptError, match=f"{paths[0]} at offset \\d+: crc mismatch"):
        WriteAheadLog.open(tmp_path / "flip", segment_bytes=200)
    cut = multi_segment(tmp_path / "cut")
    cut[1].write_bytes(cut[1].read_bytes()[:-4])
    with pytest.raises(WalCorruptError, match=str(cut[1])):
        WriteAheadLog.open(tmp_path / "cut", segment_bytes=200)


def test_a_missing_segment_refuses_to_start(tmp_path: Path) -> None:
    paths = multi_segment(tmp_path)
    paths[1].unlink()
    with pytest.raises(WalCorruptError, match="is missing"):
        WriteAheadLog.open(tmp_path, segment_bytes=200)


def test_records_that_decode_to_nonsense_refuse_to_start(tmp_path: Path) -> None:
    from shoal.node.raft_codec import pack
    from shoal.node.wal import ENTRIES, _record

    wal, _ = WriteAheadLog.open(tmp_path)
    (path,) = wal.segment_paths
    wal.append(ents(1, 2, 1), None)
    wal.close()
    size = path.stat().st_size
    bad = pack([[1, 3, b"a"], [1, 5, b"b"]])  # indices 3 then 5
    with path.open("ab") as f:
        f.write(_record(ENTRIES, bad) + _record(ENTRIES, pack([[1, 3, b"c"]])))
    with pytest.raises(WalCorruptError, match=f"offset {size}: entry indices not contiguous"):
        WriteAheadLog.open(tmp_path)


# -- model check ------------------------------------------------------------------------------


@dataclass
class Model:
    base: tuple[int, int] = (0, 0)
    entries: list[Entry] = field(default_factory=list)
    hs: HardState = field(default_factory=HardState)

    @property
    def last(self) -> int:
        return self.entries[-1].index if self.entries else self.base[0]

    @property
    def term(self) -> int:
        return max(self.hs.term, self.entries[-1].term if self.entries else self.base[1])


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.integers(0, 6),  # how far back to overwrite
            st.integers(0, 12),  # how many entries
            st.booleans(),  # new term?
            st.none() | st.just(1.0) | st.floats(0, 1),  # hard state commit, as a fraction
        ),
        st.tuples(st.just("snapshot"), st.just(1.0) | st.floats(0, 1)),
        st.tuples(st.just("install"), st.integers(1, 5)),
        st.tuples(st.just("sync")),
        st.tuples(st.just("reopen")),
    ),
    max_size=40,
)


def step(wal: WriteAheadLog, model: Model, op: tuple[object, ...]) -> None:
    kind = op[0]
    if kind == "append":
        _, back, count, bump, commit = op
        assert isinstance(back, int) and isinstance(count, int)
        first = max(model.base[0], model.hs.commit, model.last - back) + 1
        term = model.term + (1 if bump else 0)
        new = ents(first, first + count - 1, term)
        hs = None
        if isinstance(commit, float):
            last = new[-1].index if new else model.last
            c = model.hs.commit + int((last - model.hs.commit) * commit)
            hs = HardState(term=term, vote="n1", commit=c)
        wal.append(new, hs)
        if new:
            model.entries = [e for e in model.entries if e.index < first] + new
        if hs is not None:
            model.hs = hs
    elif kind == "snapshot":
        fraction = op[1]
        assert isinstance(fraction, float)
        lo, hi = model.base[0], max(model.base[0], model.hs.commit)
        index = lo + int((hi - lo) * fraction)
        term = model.base[1] if index == lo else model.entries[index - lo - 1].term
        wal.mark_snapshot(index, term)
        model.entries = [e for e in model.entries if e.index > index]
        model.base = (index, term)
    elif kind == "install":
        ahead = op[1]
        assert isinstance(ahead, int)
        index, term = model.last + ahead, model.term + 1
        wal.mark_snapshot(index, term)
        model.entries, model.base = [], (index, term)
    elif kind == "sync":
        wal.sync()


def check(contents: WalContents, model: Model) -> None:
    assert contents.entries == model.entries
    assert contents.hard_state == model.hs
    assert (contents.snapshot_index, contents.snapshot_term) == model.base
    assert contents.truncated_bytes == 0


@settings(max_examples=60, deadline=None)
@given(ops=ops, segment_bytes=st.sampled_from([100, 250, 1 << 20]))
def test_replay_matches_an_in_memory_model(
    ops: list[tuple[object, ...]], segment_bytes: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "wal"
        wal, _ = WriteAheadLog.open(directory, segment_bytes=segment_bytes)
        model = Model()
        for op in ops:
            if op[0] == "reopen":
                wal.close()
                wal, contents = WriteAheadLog.open(directory, segment_bytes=segment_bytes)
                check(contents, model)
            else:
                step(wal, model, op)
        wal.close()
        check(reopen(directory, segment_bytes=segment_bytes), model)
