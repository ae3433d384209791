"""Follow one config item from a service: the content its labels get, now and on change.

    from shoal.client import ControlPlane, ConfigSubscription

    cp = ControlPlane("http://127.0.0.1:7700")
    sub = ConfigSubscription(cp, "prod/articles", reload, labels={"zone": "eu"})
    ...                       # reload(update) runs on every new version (or beta) it gets
    sub.close()

`watch_config` / `watch_config_async` are the iterators underneath: each
`ConfigUpdate` is the effective content for the caller's labels (the beta when its
selector matches), delivered once per change. A dropped stream is reopened on any
endpoint from the revision after the last update, so nothing is missed or repeated;
if that history was compacted away, the watch starts again from the present and an
update arrives only if the content differs from the last one delivered.

`ConfigSubscription` runs a watch on a daemon thread for as long as the process lives:
when the control plane is unreachable it keeps the last content and keeps retrying
(DESIGN.md decision 6 -- a service must keep running on its last view). A callback that
raises is logged and does not stop the subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ItemId, parse_content
from .errors import ShoalError, Unavailable, WatchClosed, WatchCompacted
from .http import AsyncControlPlane, ControlPlane, _translated
from .protocol import API, Attempts, Request, watch_open_error
from .sse import SseComment, SseDecoder, SseMessage

__all__ = [
    "ConfigCursor",
    "ConfigSubscription",
    "ConfigUpdate",
    "watch_config",
    "watch_config_async",
]

log = logging.getLogger("shoal.client.config")

RETRY_MIN, RETRY_MAX = 0.05, 5.0  # a subscription's reconnect backoff


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigUpdate:
    """What the caller should run now; ``deleted`` if the item went away."""

    item: str
    revision: int
    deleted: bool = False
    version: int = 0
    beta: bool = False
    format: str = "text"
    content: str = ""
    sha256: str = ""
    author: str = ""
    message: str = ""

    @property
    def value(self) -> Any:
        """The content parsed by its format (dict for json/yaml/toml/properties objects)."""
        return None if self.deleted else parse_content(self.content, self.format)

    @property
    def identity(self) -> tuple[bool, int, bool, str]:
        return self.deleted, self.version, self.beta, self.sha256


@dataclass(slots=True)
class ConfigCursor:
    """Where a config watch is (pure): the request to (re)open it, frames -> updates."""

    item: ItemId
    labels: Mapping[str, str] = field(default_factory=dict)
    last_revision: int | None = None
    last: ConfigUpdate | None = None

    def request(self) -> Request:
        params = [(f"labels.{k}", v) for k, v in sorted(self.labels.items())]
        if self.last_revision is not None:
            params.append(("start_revision", str(self.last_revision + 1)))
        return Request("GET", f"{API}/config/{self.item}/watch", tuple(params))

    def restart(self) -> None:
        """Forget the position (its history was compacted): reopen from the present."""
        self.last_revision = None

    def handle(self, item: SseMessage | SseComment) -> ConfigUpdate | None:
        if isinstance(item, SseComment):
            return None
        if item.event == "error":
            raise _stream_error(item.data)
        if item.event not in ("config", "deleted"):
            return None
        try:
            data = json.loads(item.data)
            revision = int(item.id) if item.id is not None else int(data["revision"])
            if item.event == "deleted":
                update = ConfigUpdate(item=str(self.item), revision=revision, deleted=True)
            else:
                update = ConfigUpdate(
                    item=str(self.item),
                    revision=revision,
                    version=int(data["version"]),
                    beta=bool(data["beta"]),
                    format=str(data["format"]),
                    content=str(data["content"]),
                    sha256=str(data["sha256"]),
                    author=str(data.get("author", "")),
                    message=str(data.get("message", "")),
                )
        except (ValueError, KeyError, TypeError) as error:
            raise ShoalError(f"malformed config event {item.data!r}: {error}") from None
        self.last_revision = max(revision, self.last_revision or 0)
        if self.last is not None and self.last.identity == update.identity:
            return None  # a re-list after compaction found what we already have
        self.last = update
        return update


def _stream_error(data: str) -> ShoalError:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = {"message": data}
    message = str(payload.get("message") or "config watch closed by the server")
    if payload.get("error") == "compacted":
        return WatchCompacted(message, compact_revision=payload.get("compact_revision"))
    return WatchClosed(message, code=payload.get("error"))


def _recoverable(error: ShoalError) -> bool:
    # A cut-off stream (slow reader) or a compacted start is resumed; other refusals
    # (no such item, bad labels) are the caller's to see.
    return isinstance(error, Unavailable | WatchClosed | WatchCompacted)


def watch_config(
    cp: ControlPlane, item: str, labels: Mapping[str, str] | None = None
) -> Iterator[ConfigUpdate]:
    """The effective content of ``item`` for ``labels``: now, then on every change.

    Reconnects across endpoints within the client's retry budget; raises `Unavailable`
    when it is spent, and `NotFound`/`BadRequest` for a watch the server refuses.
    """
    cursor = ConfigCursor(ItemId.parse(item), dict(labels or {}))
    return _watch(cp, cursor)


def _watch(cp: ControlPlane, cursor: ConfigCursor) -> Iterator[ConfigUpdate]:
    attempts = cp._attempts()
    while True:
        request, url = cursor.request(), attempts.endpoint
        try:
            with (
                _translated(url),
                cp._http.stream(
                    "GET",
                    url + request.path,
                    params=list(request.params),
                    timeout=cp._watch_timeout(),
                ) as response,
            ):
                if response.status_code != 200:
                    raise watch_open_error(response.status_code, response.read())
                attempts.progress(time.monotonic())
                decoder = SseDecoder()
                for chunk in response.iter_bytes():
                    for frame in decoder.feed(chunk):
                        update = cursor.handle(frame)
                        if update is not None:
                            yield update
            raise Unavailable(f"the config watch from {url} ended")
        except ShoalError as error:
            time.sleep(_retry_delay(cursor, attempts, error))


async def watch_config_async(
    cp: AsyncControlPlane, item: str, labels: Mapping[str, str] | None = None
) -> AsyncIterator[ConfigUpdate]:
    """`watch_config` for asyncio code."""
    cursor = ConfigCursor(ItemId.parse(item), dict(labels or {}))
    attempts = cp._attempts()
    while True:
        request, url = cursor.request(), attempts.endpoint
        try:
            with _translated(url):
                async with cp._http.stream(
                    "GET",
                    url + request.path,
                    params=list(request.params),
                    timeout=cp._watch_timeout(),
                ) as response:
                    if response.status_code != 200:
                        raise watch_open_error(response.status_code, await response.aread())
                    attempts.progress(time.monotonic())
                    decoder = SseDecoder()
                    async for chunk in response.aiter_bytes():
                        for frame in decoder.feed(chunk):
                            update = cursor.handle(frame)
                            if update is not None:
                                yield update
            raise Unavailable(f"the config watch from {url} ended")
        except ShoalError as error:
            await asyncio.sleep(_retry_delay(cursor, attempts, error))


def _retry_delay(cursor: ConfigCursor, attempts: Attempts, error: ShoalError) -> float:
    """How long to wait before reopening the watch after ``error``; re-raises it when the
    server refused the watch or the retry budget is spent."""
    if isinstance(error, WatchCompacted):
        cursor.restart()
    if not _recoverable(error):
        raise error
    # Attempts only moves on after errors it deems retryable; a recoverable stream end is.
    retryable = error if isinstance(error, Unavailable) else Unavailable(error.message)
    delay = attempts.after_failure(retryable, time.monotonic())
    if delay is None:
        raise error
    return delay


class ConfigSubscription:
    """Calls ``callback(update)`` for every new content of ``item``, from a daemon thread.

    ``current`` is the last update (None until the first arrives); ``wait`` blocks until
    one satisfies a condition. The thread reconnects for ever, with backoff, so a
    control-plane outage leaves the service on its last config rather than failing.
    """

    def __init__(
        self,
        cp: ControlPlane,
        item: str,
        callback: Callable[[ConfigUpdate], object] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self._cursor = ConfigCursor(ItemId.parse(item), dict(labels or {}))  # fails fast
        self._cp, self._callback = cp, callback
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self.current: ConfigUpdate | None = None
        self.error: ShoalError | None = None  # the last refusal, if the server refuses
        self._thread = threading.Thread(target=self._run, name=f"config-{item}", daemon=True)
        self._thread.start()

    def wait(
        self, until: Callable[[ConfigUpdate], bool] = lambda u: True, timeout: float = 10.0
    ) -> ConfigUpdate:
        """The first current update for which ``until`` holds; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.current is None or not until(self.current):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching config update within {timeout} s")
                self._changed.wait(left)
            return self.current

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        delay = RETRY_MIN
        while not self._closed.is_set():
            try:
                for update in _watch(self._cp, self._cursor):
                    if self._closed.is_set():
                        return
                    delay = RETRY_MIN
                    self._deliver(update)
            except ShoalError as error:
                self.error = error
                if not _recoverable(error):
                    log.warning("config watch of %s refused: %s", self._cursor.item, error)
            except Exception:  # never let the thread die: the service runs on
                log.exception("config watch of %s failed", self._cursor.item)
            self._closed.wait(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _deliver(self, update: ConfigUpdate) -> None:
        with self._changed:
            self.current = update
            self._changed.notify_all()
        if self._callback is not None:
            try:
                self._callback(update)
            except Exception:
                log.exception("config callback for %s raised", self._cursor.item)
