"""Key ranges: how a (key, range_end) pair names one key, a range or a prefix.

Theory of operation (etcd's conventions, so clients that know etcd are not surprised):

- ``range_end is None``: exactly ``key``.
- ``range_end == b"\\x00"``: every key ``>= key`` (``key=b"\\x00"`` with it is "all keys").
- otherwise: the half-open interval ``[key, range_end)`` in byte order.

A prefix ``p`` is the range ``[p, prefix_end(p))``. Pure functions only; no state here.
"""

from __future__ import annotations

TO_END = b"\x00"


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes ``[prefix, end)`` hold exactly the keys starting with prefix.

    Increments the last byte that is not 0xff and drops what follows; a prefix of only
    0xff bytes (or empty) has no upper bound, so it returns ``TO_END``.
    """
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return TO_END


def in_range(key: bytes, start: bytes, range_end: bytes | None) -> bool:
    """Whether ``key`` falls in the range named by ``(start, range_end)``."""
    if range_end is None:
        return key == start
    if range_end == TO_END:
        return key >= start
    return start <= key < range_end
