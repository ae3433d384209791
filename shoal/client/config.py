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

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..config import ItemId, parse_content
from .errors import ShoalError, Unavailable, WatchClosed, WatchCompacted
from .protocol import API, Call, Consistency, Request, StreamCursor
from .sse import SseComment, SseMessage

if TYPE_CHECKING:
    from .http import AsyncControlPlane, ControlPlane

__all__ = [
    "AsyncConfigCalls",
    "ConfigCalls",
    "ConfigCursor",
    "ConfigSubscription",
    "ConfigUpdate",
    "watch_config",
    "watch_config_async",
]

log = logging.getLogger("shoal.client.config")

T = TypeVar("T")
RETRY_MIN, RETRY_MAX = 0.05, 5.0  # a subscription's reconnect backoff
BASE = f"{API}/config"
# A write that lost a race to a concurrent one did nothing; the server re-plans it from
# the new state when it is sent again. (A version_mismatch is a 409 too: never repeated.)
_LOST_RACE = frozenset({"conflict"})
Json = dict[str, Any]


# -- calls (each answers the server's JSON object; see docs/api.md) --------------------


def _item(item: str | ItemId) -> ItemId:
    return item if isinstance(item, ItemId) else ItemId.parse(item)


def _write(
    method: str, path: str, body: Json | None = None, params: tuple[tuple[str, str], ...] = ()
) -> Call[Json]:
    return Call(
        Request(method, path, params, json=body), dict, idempotent=False, repeat_on=_LOST_RACE
    )


def _body(**values: Any) -> Json:
    return {k: v for k, v in values.items() if v is not None}


def publish(
    item: str | ItemId,
    content: str,
    format: str = "text",
    *,
    author: str | None = None,
    message: str | None = None,
    expect_version: int | None = None,
) -> Call[Json]:
    """Publish the next version: `{"version", "sha256", "revision"}`."""
    body = _body(
        content=content,
        format=format,
        author=author,
        message=message,
        expect_version=expect_version,
    )
    return _write("PUT", f"{BASE}/{_item(item)}", body)


def get(
    item: str | ItemId,
    labels: Mapping[str, str] | None = None,
    consistency: Consistency = "linearizable",
) -> Call[Json]:
    """The content an instance with `labels` gets now (the beta's when they match)."""
    params = [(f"labels.{k}", v) for k, v in sorted((labels or {}).items())]
    if consistency == "stale":
        params.append(("consistency", "stale"))
    return Call(Request("GET", f"{BASE}/{_item(item)}", tuple(params)), dict)


def version(item: str | ItemId, number: int) -> Call[Json]:
    return Call(Request("GET", f"{BASE}/{_item(item)}/versions/{int(number)}"), dict)


def history(item: str | ItemId) -> Call[Json]:
    return Call(Request("GET", f"{BASE}/{_item(item)}/history"), dict)


def diff(item: str | ItemId, from_version: int, to_version: int) -> Call[Json]:
    params = (("from", str(int(from_version))), ("to", str(int(to_version))))
    return Call(Request("GET", f"{BASE}/{_item(item)}/diff", params), dict)


def list_items(namespace: str | None = None) -> Call[Json]:
    params = (("namespace", namespace),) if namespace else ()
    return Call(Request("GET", BASE, params), dict)


def rollback(
    item: str | ItemId, to_version: int, *, author: str | None = None, message: str | None = None
) -> Call[Json]:
    body = _body(version=to_version, author=author, message=message)
    return _write("POST", f"{BASE}/{_item(item)}/rollback", body)


def delete(item: str | ItemId, *, expect_version: int | None = None) -> Call[Json]:
    params = () if expect_version is None else (("expect_version", str(expect_version)),)
    return _write("DELETE", f"{BASE}/{_item(item)}", params=params)


def put_beta(
    item: str | ItemId,
    content: str,
    selector: Mapping[str, str],
    format: str | None = None,
    *,
    author: str | None = None,
    message: str | None = None,
) -> Call[Json]:
    body = _body(
        content=content, format=format, selector=dict(selector), author=author, message=message
    )
    return _write("PUT", f"{BASE}/{_item(item)}/beta", body)


def promote_beta(
    item: str | ItemId, *, author: str | None = None, message: str | None = None
) -> Call[Json]:
    return _write(
        "POST", f"{BASE}/{_item(item)}/beta/promote", _body(author=author, message=message)
    )


def drop_beta(item: str | ItemId) -> Call[Json]:
    return _write("DELETE", f"{BASE}/{_item(item)}/beta")


# -- the watch ------------------------------------------------------------------------


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
    """Where a config watch is (pure): the request to (re)open it, frames -> updates.

    A stream cut off or dropped is reopened from the revision after the last update; a
    start that was compacted away restarts from the present (an update then arrives only
    if the content differs from the last one delivered). Refusals (no such item, bad
    labels) are the caller's.
    """

    item: ItemId
    labels: Mapping[str, str] = field(default_factory=dict)
    last_revision: int | None = None
    last: ConfigUpdate | None = None
    resume: bool = True

    def request(self) -> Request:
        params = [(f"labels.{k}", v) for k, v in sorted(self.labels.items())]
        if self.last_revision is not None:
            params.append(("start_revision", str(self.last_revision + 1)))
        return Request("GET", f"{BASE}/{self.item}/watch", tuple(params))

    def restart(self) -> None:
        """Forget the position (its history was compacted): reopen from the present."""
        self.last_revision = None

    def reopen(self, error: ShoalError) -> bool:
        if isinstance(error, WatchCompacted):
            self.restart()
        return isinstance(error, Unavailable | WatchClosed | WatchCompacted)

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
    return cp.stream(ConfigCursor(ItemId.parse(item), dict(labels or {})))


def watch_config_async(
    cp: AsyncControlPlane, item: str, labels: Mapping[str, str] | None = None
) -> AsyncIterator[ConfigUpdate]:
    """`watch_config` for asyncio code."""
    return cp.stream(ConfigCursor(ItemId.parse(item), dict(labels or {})))


# -- the shells' config namespace -----------------------------------------------------


class _Shell(Protocol):
    def call(self, call: Call[T]) -> T: ...

    def stream(self, cursor: StreamCursor[T]) -> Iterator[T]: ...


class _AsyncShell(Protocol):
    async def call(self, call: Call[T]) -> T: ...

    def stream(self, cursor: StreamCursor[T]) -> AsyncIterator[T]: ...


class ConfigCalls:
    """`cp.config` on a `ControlPlane`: the calls above, sent (see each for its answer)."""

    def __init__(self, shell: _Shell) -> None:
        self._shell = shell

    def publish(self, item: str | ItemId, content: str, format: str = "text", **kw: Any) -> Json:
        return self._shell.call(publish(item, content, format, **kw))

    def get(self, item: str | ItemId, labels: Mapping[str, str] | None = None) -> Json:
        return self._shell.call(get(item, labels))

    def version(self, item: str | ItemId, number: int) -> Json:
        return self._shell.call(version(item, number))

    def history(self, item: str | ItemId) -> Json:
        return self._shell.call(history(item))

    def diff(self, item: str | ItemId, from_version: int, to_version: int) -> Json:
        return self._shell.call(diff(item, from_version, to_version))

    def list(self, namespace: str | None = None) -> Json:
        return self._shell.call(list_items(namespace))

    def rollback(self, item: str | ItemId, to_version: int, **kw: Any) -> Json:
        return self._shell.call(rollback(item, to_version, **kw))

    def delete(self, item: str | ItemId, *, expect_version: int | None = None) -> Json:
        return self._shell.call(delete(item, expect_version=expect_version))

    def put_beta(
        self, item: str | ItemId, content: str, selector: Mapping[str, str], **kw: Any
    ) -> Json:
        return self._shell.call(put_beta(item, content, selector, **kw))

    def promote_beta(self, item: str | ItemId, **kw: Any) -> Json:
        return self._shell.call(promote_beta(item, **kw))

    def drop_beta(self, item: str | ItemId) -> Json:
        return self._shell.call(drop_beta(item))

    def watch(
        self, item: str | ItemId, labels: Mapping[str, str] | None = None
    ) -> Iterator[ConfigUpdate]:
        return self._shell.stream(ConfigCursor(_item(item), dict(labels or {})))


class AsyncConfigCalls:
    """`cp.config` on an `AsyncControlPlane`: the same calls, awaited."""

    def __init__(self, shell: _AsyncShell) -> None:
        self._shell = shell

    async def publish(
        self, item: str | ItemId, content: str, format: str = "text", **kw: Any
    ) -> Json:
        return await self._shell.call(publish(item, content, format, **kw))

    async def get(self, item: str | ItemId, labels: Mapping[str, str] | None = None) -> Json:
        return await self._shell.call(get(item, labels))

    async def version(self, item: str | ItemId, number: int) -> Json:
        return await self._shell.call(version(item, number))

    async def history(self, item: str | ItemId) -> Json:
        return await self._shell.call(history(item))

    async def diff(self, item: str | ItemId, from_version: int, to_version: int) -> Json:
        return await self._shell.call(diff(item, from_version, to_version))

    async def list(self, namespace: str | None = None) -> Json:
        return await self._shell.call(list_items(namespace))

    async def rollback(self, item: str | ItemId, to_version: int, **kw: Any) -> Json:
        return await self._shell.call(rollback(item, to_version, **kw))

    async def delete(self, item: str | ItemId, *, expect_version: int | None = None) -> Json:
        return await self._shell.call(delete(item, expect_version=expect_version))

    async def put_beta(
        self, item: str | ItemId, content: str, selector: Mapping[str, str], **kw: Any
    ) -> Json:
        return await self._shell.call(put_beta(item, content, selector, **kw))

    async def promote_beta(self, item: str | ItemId, **kw: Any) -> Json:
        return await self._shell.call(promote_beta(item, **kw))

    async def drop_beta(self, item: str | ItemId) -> Json:
        return await self._shell.call(drop_beta(item))

    def watch(
        self, item: str | ItemId, labels: Mapping[str, str] | None = None
    ) -> AsyncIterator[ConfigUpdate]:
        return self._shell.stream(ConfigCursor(_item(item), dict(labels or {})))


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
                for update in self._cp.stream(self._cursor):
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
