"""Decomposition helpers and aggregation: exact coverage, stable hashing, in-order folds."""

from __future__ import annotations

import operator
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.compute import RunMerger, by_key, chunks, files, key_partition, ranges, tree_reduce


@given(st.integers(-(10**6), 10**6), st.integers(0, 10**5), st.integers(1, 300))
def test_ranges_cover_start_stop_exactly_once(start: int, length: int, parts: int) -> None:
    stop = start + length
    out = ranges(start, stop, parts)
    assert len(out) == parts
    assert out[0][0] == start and out[-1][1] == stop
    assert all(a <= b for a, b in out)
    assert all(out[i][1] == out[i + 1][0] for i in range(parts - 1))  # contiguous, no overlap
    sizes = [b - a for a, b in out]
    assert max(sizes) - min(sizes) <= 1


def test_ranges_examples() -> None:
    assert ranges(0, 10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert ranges(0, 2, 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert ranges(5, 5, 1) == [(5, 5)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 0), "parts must be > 0, got 0"),
        ((0, 10, -3), "parts must be > 0, got -3"),
        ((10, 0, 2), "stop must be >= start"),
        ((0, 10, 2.5), "parts must be an int"),
    ],
)
def test_ranges_reject_bad_input(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ranges(*args)


@given(st.lists(st.integers()), st.integers(1, 20))
def test_chunks_concatenate_back_to_the_input(items: list[int], size: int) -> None:
    out = chunks(items, size)
    assert [x for chunk in out for x in chunk] == items
    assert all(len(c) == size for c in out[:-1])


def test_chunks_reject_bad_size() -> None:
    with pytest.raises(ValueError, match="size must be > 0, got 0"):
        chunks([1, 2], 0)
    with pytest.raises(ValueError, match="size must be > 0, got -1"):
        chunks([1, 2], -1)


records = st.lists(st.tuples(st.text(max_size=4), st.integers()), max_size=60)


@given(records, st.integers(1, 16))
def test_by_key_keeps_equal_keys_together_and_loses_nothing(
    rows: list[tuple[str, int]], parts: int
) -> None:
    out = by_key(rows, key=lambda r: r[0], parts=parts)
    assert len(out) == parts
    assert sorted(r for p in out for r in p) == sorted(rows)
    home: dict[str, int] = {}
    for i, part in enumerate(out):
        for word, _ in part:
            assert home.setdefault(word, i) == i
            assert key_partition(word, parts) == i


def test_by_key_is_stable_across_processes() -> None:
    # CRC-32 of repr, not the salted hash(): these placements never change.
    assert zlib.crc32(b"'apple'") % 8 == key_partition("apple", 8)
    assert [key_partition(w, 8) for w in ("apple", "banana", "cherry", 42)] == [5, 0, 1, 0]


def test_by_key_rejects_bad_parts() -> None:
    with pytest.raises(ValueError, match="parts must be > 0"):
        by_key([1], key=str, parts=-1)


def test_files_sorted_and_clear_error_when_none(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "c.log"):
        (tmp_path / name).write_text("x")
    (tmp_path / "d.txt").mkdir()
    assert files(str(tmp_path / "*.txt")) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    with pytest.raises(ValueError, match="no files match"):
        files(str(tmp_path / "*.csv"))


# --- aggregation ---------------------------------------------------------------------------


@given(st.lists(st.text(max_size=3), min_size=1, max_size=40), st.randoms())
def test_run_merger_equals_the_in_order_fold_for_any_arrival_order(
    values: list[str], rng: object
) -> None:
    order = list(range(len(values)))
    rng.shuffle(order)  # type: ignore[attr-defined]
    merger = RunMerger(len(values), operator.add)  # string concat: associative, not commutative
    for i in order:
        assert not merger.complete
        merger.add(i, values[i])
    assert merger.result() == "".join(values)
    assert tree_reduce(values, operator.add) == "".join(values)


def test_run_merger_without_combine_keeps_partition_order() -> None:
    merger = RunMerger(3, None)
    for i in (2, 0, 1):
        merger.add(i, i * 10)
    assert merger.result() == [0, 10, 20]


def test_aggregation_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="nothing to reduce"):
        tree_reduce([], operator.add)
    merger = RunMerger(2, operator.add)
    merger.add(0, 1)
    with pytest.raises(ValueError, match="only 1 of 2"):
        merger.result()
    with pytest.raises(ValueError, match="out of range"):
        merger.add(5, 1)
