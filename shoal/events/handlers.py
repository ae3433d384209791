"""What a handler is, how it says "not now", and how its outcome becomes a stimulus.

A handler takes a `Message` and returns (acknowledged), raises `Nack(delay=...)`
(redeliver no sooner than `delay` seconds; counts as a failed attempt) or raises anything
else (a failed attempt, redelivered after the topic's backoff). It may be a plain
function -- run on a worker thread, so it may block -- or a coroutine function, run on
the consumer's loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Union

from .delivery import Acked, Failed
from .model import Message

__all__ = ["AsyncHandler", "Handler", "Nack", "SyncHandler", "is_async", "outcome"]

SyncHandler = Callable[[Message], object]
AsyncHandler = Callable[[Message], Awaitable[object]]
Handler = Union[SyncHandler, AsyncHandler]  # noqa: UP007


class Nack(Exception):
    """Raised by a handler: redeliver this message after `delay` seconds (None: the
    topic's backoff). The attempt counts towards the topic's `max_attempts`."""

    def __init__(self, delay: float | None = None, reason: str = "nack") -> None:
        super().__init__(reason)
        if delay is not None and delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.delay, self.reason = delay, reason


def is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - a callable object's method
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def outcome(message: Message, error: BaseException | None) -> Acked | Failed:
    if error is None:
        return Acked(message.partition, message.offset)
    if isinstance(error, Nack):
        return Failed(message.partition, message.offset, error.delay, error.reason)
    return Failed(message.partition, message.offset, None, f"{type(error).__name__}: {error}")
