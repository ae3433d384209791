"""Decomposition helpers: split a job's input into partitions.

Each helper returns a plain list whose items are the partitions; the job's map function
is called once per item. Everything here is pure -- no I/O, no clock, no randomness --
so the same input always gives the same partitions (``by_key`` hashes with CRC-32 of the
key's ``repr``, never the salted built-in ``hash``, so the placement of a key does not
change between processes or runs). ``files`` lives in ``shoal.compute.sources`` because
it reads the file system.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["Partitioner", "by_key", "chunks", "key_partition", "ranges"]

T = TypeVar("T")
P_co = TypeVar("P_co", covariant=True)


@runtime_checkable
class Partitioner(Protocol[P_co]):
    """A user-defined way to split a job's input, resolved when the job runs.

    ``split()`` is called once, in the driver, when the job is submitted; it returns the
    partitions in order (at least one). It may do I/O (list a bucket, create a sample
    folder); the map function is then called once per returned item in a worker.
    """

    def split(self) -> Sequence[P_co]: ...


def _check_parts(parts: int) -> None:
    if isinstance(parts, bool) or not isinstance(parts, int):
        raise ValueError(f"parts must be an int, got {type(parts).__name__}")
    if parts <= 0:
        raise ValueError(f"parts must be > 0, got {parts}")


def ranges(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """Split ``[start, stop)`` into ``parts`` contiguous half-open ranges.

    Sizes differ by at most one (the first ``(stop - start) % parts`` ranges are one
    longer). When there are fewer numbers than parts, the surplus ranges are empty
    (``(x, x)``), so the count is always exactly ``parts`` and the union is exact.
    """
    _check_parts(parts)
    if stop < start:
        raise ValueError(f"stop must be >= start, got start={start}, stop={stop}")
    size, extra = divmod(stop - start, parts)
    out: list[tuple[int, int]] = []
    lo = start
    for i in range(parts):
        hi = lo + size + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def chunks(sequence: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive slices of ``sequence`` of ``size`` items (the last may be shorter)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"size must be an int, got {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    return [sequence[i : i + size] for i in range(0, len(sequence), size)]


def key_partition(key: Hashable, parts: int) -> int:
    """The partition (0..parts-1) a key belongs to: CRC-32 of ``repr(key)``, stable across runs."""
    _check_parts(parts)
    return zlib.crc32(repr(key).encode("utf-8")) % parts


def by_key(records: Iterable[T], key: Callable[[T], Hashable], parts: int) -> list[list[T]]:
    """Hash-partition ``records`` into ``parts`` lists; records with equal keys land together.

    Within a partition records keep their input order. Keys are compared by ``repr``, so
    use keys whose ``repr`` is deterministic (str, int, tuples of them).
    """
    _check_parts(parts)
    if not callable(key):
        raise ValueError("key must be a function of a record")
    out: list[list[T]] = [[] for _ in range(parts)]
    for record in records:
        out[zlib.crc32(repr(key(record)).encode("utf-8")) % parts].append(record)
    return out
