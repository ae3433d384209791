"""The one place cloudpickle is imported: functions and data on their way to workers.

Functions travel with cloudpickle (so lambdas and closures defined in ``__main__`` or a
notebook work); partition data and results travel with the standard pickle, which is
several times faster for plain data, falling back to cloudpickle for what only it can
handle. Errors are translated into ``JobError`` here, naming what could not be pickled.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from .errors import JobError

__all__ = ["dumps_data", "dumps_function", "loads"]

PROTOCOL = pickle.HIGHEST_PROTOCOL


def dumps_function(fn: Any, what: str) -> bytes:
    """cloudpickle ``fn``; a ``JobError`` naming ``what`` and the reason if it cannot be."""
    if not callable(fn):
        raise JobError(f"{what} must be callable, got {type(fn).__name__}")
    try:
        data: bytes = cloudpickle.dumps(fn, protocol=PROTOCOL)
    except Exception as error:
        name = getattr(fn, "__qualname__", repr(fn))
        raise JobError(
            f"{what} {name!r} cannot be sent to workers (cloudpickle failed): "
            f"{type(error).__name__}: {error}"
        ) from error
    return data


def dumps_data(value: Any) -> bytes:
    """Pickle plain data fast; fall back to cloudpickle (raises what it raises)."""
    try:
        return pickle.dumps(value, protocol=PROTOCOL)
    except Exception:
        data: bytes = cloudpickle.dumps(value, protocol=PROTOCOL)
        return data


def loads(data: bytes) -> Any:
    return pickle.loads(data)
