"""The sans-IO core of the control-plane client: what to send, how to read the answer,
where to retry. Both `ControlPlane` (sync) and `AsyncControlPlane` (async) are thin shells
around these functions; they only move bytes and sleep.

Theory of operation.

- Each API operation is a function returning a `Call[T]`: the `Request` to send, how to
  turn a 2xx JSON body into `T`, optionally how to turn an error into a value (a missing
  key is `None`, not an exception), and whether the request is safe to repeat.
- `finish(call, status, body)` is the one place a response becomes a value or a
  `ShoalError` (`error_for` maps status and `{"error", "message"}` to the hierarchy).
- `Attempts` decides, from the error and the time passed in, which endpoint to try next
  and how long to wait: every endpoint once, then rounds with doubling backoff, until a
  deadline. Connection refused is always retried; a request that may have reached a
  server is repeated only when it is idempotent or the server said it did nothing (503).
- A stream (a watch, the keep-alive stream) is driven by a `StreamCursor`: the request
  that opens (or reopens) it, what each SSE item means, and which errors to reopen after.
  Each shell has one loop that runs any cursor (`stream`). `WatchCursor` turns SSE items
  into `Event`s and remembers where the stream is, so a dropped watch resumes without
  loss or duplicates (see its docstring).
- The registry's and the config center's calls live beside their cursors in
  `shoal.client.registry` and `shoal.client.config`, built the same way.

No I/O, no clock (time comes in as `now`), no randomness.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from .errors import (
    BadRequest,
    Compacted,
    NotFound,
    ShoalError,
    Unavailable,
    WatchClosed,
    WatchCompacted,
)
from .sse import SseComment, SseMessage
from .types import ClusterMember, ClusterStatus, Event, KeyValue, LeaseTimeToLive, Page

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Consistency = Literal["linearizable", "stale"]
Params = tuple[tuple[str, str], ...]

API = "/api/v1"
RETRY_CODES = frozenset({"no_leader", "unavailable"})


# -- requests and answers -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    params: Params = ()
    json: Any = None


def _never(error: ShoalError) -> Any:
    raise error


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    request: Request
    parse: Callable[[Any], T]
    recover: Callable[[ShoalError], T] = _never  # an error that is an answer, or re-raise
    idempotent: bool = True
    # Error codes after which the server did nothing and asks for the same request again
    # (e.g. a config publish that lost a race: the server re-plans it from the new state).
    repeat_on: frozenset[str] = frozenset()


def parse_endpoints(text: str | Sequence[str]) -> tuple[str, ...]:
    """`"a:7700, http://b:7700/"` -> `("http://a:7700", "http://b:7700")`."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        url = item if "://" in item else f"http://{item}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bad endpoint {item!r}: expected a URL like http://127.0.0.1:7700")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as error:
            raise ValueError(f"bad endpoint {item!r}: {error}") from None
        out.append(url.rstrip("/"))
    if not out:
        raise ValueError("no endpoints given")
    return tuple(out)


def error_for(status: int, body: bytes) -> ShoalError:
    """The exception for a non-2xx answer (`{"error": code, "message": text}` when JSON)."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    code = data.get("error")
    code = str(code) if code is not None else None
    message = str(data.get("message") or body.decode("utf-8", "replace").strip() or status)
    if status == 410:
        compact = data.get("compact_revision")
        return Compacted(message, compact_revision=compact, code=code)
    if status == 404:
        return NotFound(message, code=code, status=status)
    if status == 503 or status == 504:
        return Unavailable(message, code=code, status=status)
    if 400 <= status < 500:
        return BadRequest(message, code=code, status=status)
    return ShoalError(f"server error {status}: {message}", code=code, status=status)


def finish(call: Call[T], status: int, body: bytes) -> T:
    """The value of `call` answered with `status` and `body`, or its exception raised."""
    if 200 <= status < 300:
        try:
            data = json.loads(body)
        except ValueError as error:
            raise ShoalError(f"the server sent a body that is not JSON: {error}") from None
        return call.parse(data)
    return call.recover(error_for(status, body))


def _q(text: str) -> str:
    return quote(text, safe="/")


def _params(**values: Any) -> Params:
    out = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        out.append((name, "true" if value is True else str(value)))
    return tuple(out)


def _key(key: str) -> str:
    if not key:
        raise ValueError("key must not be empty")
    return key


# -- kv -------------------------------------------------------------------------------


def put(key: str, value: str, lease: int | None = None, prev_kv: bool = False) -> Call[int]:
    body: dict[str, Any] = {"value": value}
    if lease is not None:
        body["lease"] = lease
    if prev_kv:
        body["prev_kv"] = True
    return Call(
        Request("PUT", f"{API}/kv/{_q(_key(key))}", json=body), lambda d: int(d["revision"])
    )


def _missing(error: ShoalError) -> None:
    if isinstance(error, NotFound) and error.code == "key_not_found":
        return None
    raise error


def get(key: str, consistency: Consistency = "linearizable") -> Call[KeyValue | None]:
    params = _params(consistency="stale" if consistency == "stale" else None)
    return Call(
        Request("GET", f"{API}/kv/{_q(_key(key))}", params),
        KeyValue.from_json,
        recover=_missing,
    )


def _page(data: dict[str, Any]) -> Page:
    return Page(
        kvs=tuple(KeyValue.from_json(kv) for kv in data["kvs"]),
        more=bool(data["more"]),
        next_after=data.get("next_after"),
        count=int(data.get("count", len(data["kvs"]))),
        revision=int(data["revision"]),
    )


def list_keys(
    prefix: str = "",
    limit: int = 1000,
    after: str | None = None,
    consistency: Consistency = "linearizable",
    revision: int | None = None,
) -> Call[Page]:
    params = _params(
        prefix=prefix or None,
        limit=limit,
        after=after,
        revision=revision,
        consistency="stale" if consistency == "stale" else None,
    )
    return Call(Request("GET", f"{API}/kv", params), _page)


def next_page(page: Page, prefix: str, limit: int, consistency: Consistency) -> Call[Page] | None:
    """The call for the page after `page`, read at the same revision, or None at the end."""
    if not page.more or page.next_after is None:
        return None
    return list_keys(prefix, limit, page.next_after, consistency, revision=page.revision)


def delete(key: str, prefix: bool = False) -> Call[int]:
    params = _params(prefix=prefix)
    return Call(Request("DELETE", f"{API}/kv/{_q(_key(key))}", params), lambda d: int(d["deleted"]))


def txn(
    compare: Sequence[dict[str, Any]],
    success: Sequence[dict[str, Any]],
    failure: Sequence[dict[str, Any]] = (),
) -> Call[dict[str, Any]]:
    body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
    return Call(Request("POST", f"{API}/txn", json=body), dict, idempotent=False)


def compact(revision: int) -> Call[int]:
    body = {"revision": revision}
    return Call(Request("POST", f"{API}/compact", json=body), lambda d: int(d["compact_revision"]))


# -- leases ---------------------------------------------------------------------------


def grant(ttl: int, id: int | None = None) -> Call[int]:
    body: dict[str, Any] = {"ttl": ttl}
    if id is not None:
        body["id"] = id
    # Without an id the server picks one, so a repeat would grant a second lease.
    return Call(
        Request("POST", f"{API}/leases", json=body),
        lambda d: int(d["id"]),
        idempotent=id is not None,
    )


def keepalive(lease_id: int) -> Call[int]:
    return Call(Request("POST", f"{API}/leases/{lease_id}/keepalive"), lambda d: int(d["ttl"]))


def revoke(lease_id: int) -> Call[tuple[str, ...]]:
    return Call(
        Request("DELETE", f"{API}/leases/{lease_id}"), lambda d: tuple(d.get("deleted", ()))
    )


def _ttl(data: dict[str, Any]) -> LeaseTimeToLive:
    return LeaseTimeToLive(
        id=int(data["id"]),
        granted_ttl=int(data["granted_ttl"]),
        remaining=float(data["remaining"]),
        keys=tuple(data.get("keys", ())),
    )


def time_to_live(lease_id: int) -> Call[LeaseTimeToLive]:
    return Call(Request("GET", f"{API}/leases/{lease_id}"), _ttl)


# -- cluster --------------------------------------------------------------------------


def _status(data: dict[str, Any]) -> ClusterStatus:
    return ClusterStatus(
        member=data["member"],
        leader=data.get("leader"),
        term=int(data["term"]),
        role=str(data["role"]),
        commit_index=int(data["commit_index"]),
        applied_index=int(data["applied_index"]),
        revision=int(data["revision"]),
        members=tuple(
            ClusterMember(
                name=m["name"],
                voter=bool(m["voter"]),
                leader=bool(m["leader"]),
                client_url=m.get("client_url"),
                peer_addr=m.get("peer_addr"),
                match_index=m.get("match_index"),
            )
            for m in data["members"]
        ),
    )


def cluster_status() -> Call[ClusterStatus]:
    return Call(Request("GET", f"{API}/cluster"), _status)


def _index(data: dict[str, Any]) -> int:
    return int(data["index"])


def add_member(
    name: str,
    peer_addr: str,
    learner: bool = True,
    client_url: str | None = None,
    promote: bool = False,
) -> Call[int]:
    body: dict[str, Any] = {"name": name, "peer_addr": peer_addr, "learner": learner}
    if client_url is not None:
        body["client_url"] = client_url
    if promote:
        body["promote"] = True
    return Call(Request("POST", f"{API}/cluster/members", json=body), _index, idempotent=False)


def promote(name: str) -> Call[int]:
    return Call(Request("POST", f"{API}/cluster/members/{_q(name)}/promote"), _index)


def remove_member(name: str) -> Call[int]:
    return Call(Request("DELETE", f"{API}/cluster/members/{_q(name)}"), _index)


def transfer(to: str) -> Call[str]:
    body = {"to": to}
    return Call(
        Request("POST", f"{API}/cluster/transfer", json=body), lambda d: str(d["transferring_to"])
    )


def ready() -> Call[dict[str, Any]]:
    return Call(Request("GET", "/readyz"), dict)


# -- retries --------------------------------------------------------------------------


def retryable(error: ShoalError, idempotent: bool, repeat_on: frozenset[str] = frozenset()) -> bool:
    if error.code is not None and error.code in repeat_on:
        return True
    if not isinstance(error, Unavailable):
        return False
    if error.status is not None:  # the server answered: only "did nothing, try again" codes
        return error.code in RETRY_CODES
    return idempotent or not error.request_sent


@dataclass(slots=True)
class Attempts:
    """Where to send the next try and how long to wait before it (pure; `now` passed in).

    Starts at `start` (the endpoint that answered last), moves to the next endpoint at
    once after a failure, and after a whole round of failures waits `backoff`, doubling
    up to `max_backoff`. Gives up (returns None) when the next try would begin after the
    deadline; `progress(now)` pushes the deadline out again (a watch that delivered).
    """

    endpoints: Sequence[str]
    now: float
    budget: float = 5.0
    start: int = 0
    backoff: float = 0.05
    max_backoff: float = 0.5
    index: int = field(init=False)
    deadline: float = field(init=False)
    _failures_in_round: int = field(init=False, default=0)
    _delay: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("no endpoints to try")
        self.index = self.start % len(self.endpoints)
        self.deadline = self.now + self.budget
        self._delay = self.backoff

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.index]

    def progress(self, now: float) -> None:
        self.deadline = now + self.budget
        self._failures_in_round = 0
        self._delay = self.backoff

    def after_failure(
        self,
        error: ShoalError,
        now: float,
        idempotent: bool = True,
        repeat_on: frozenset[str] = frozenset(),
    ) -> float | None:
        """Seconds to wait before trying `self.endpoint` again (moved on), or None: give up."""
        if not retryable(error, idempotent, repeat_on):
            return None
        self.index = (self.index + 1) % len(self.endpoints)
        self._failures_in_round += 1
        delay = 0.0
        if self._failures_in_round >= len(self.endpoints):
            delay, self._failures_in_round = self._delay, 0
            self._delay = min(self._delay * 2, self.max_backoff)
        if now + delay >= self.deadline:
            return None
        return delay


# -- streams --------------------------------------------------------------------------


class StreamCursor(Protocol[T_co]):
    """What a shell's one stream loop needs to run, and resume, an SSE stream.

    `request()` is asked again before every (re)connection, so a cursor that remembers
    its position reopens where it left off. `handle(item)` turns one SSE item into a
    value to yield (None: nothing to yield) or raises the error the item reports.
    `reopen(error)` says whether to reconnect (after the shell's backoff, within its
    retry budget) or to raise `error` to the caller; a cursor may reposition itself here
    (e.g. start from the present after `WatchCompacted`). `resume` False: a stream that
    ends cleanly ends the iteration instead of being reopened.
    """

    @property
    def resume(self) -> bool: ...

    def request(self) -> Request: ...

    def handle(self, item: SseMessage | SseComment) -> T_co | None: ...

    def reopen(self, error: ShoalError) -> bool: ...


def as_retryable(error: ShoalError) -> ShoalError:
    """`error` in the form `Attempts` moves on after: a stream a cursor chose to reopen
    after is retried like a connection failure."""
    if isinstance(error, Unavailable) and retryable(error, True):
        return error
    return Unavailable(error.message, request_sent=False)


# -- watch ----------------------------------------------------------------------------

_START_MARK = "watching from revision "


MAX_WATCH_PREFIXES = 256  # the server's limit for one prefix-set watch (docs/api.md)


@dataclass(slots=True)
class WatchCursor:
    """Where a watch stream is, so that reconnecting resumes it exactly.

    Events of one transaction share a revision, and a connection may drop between them.
    So a resumed watch starts AT the last revision seen (not after it) and drops the
    events of that revision it already delivered: every event exactly once, in order.
    Before any event, the server's opening comment ("watching from revision N") tells
    where the stream began, so a watch opened "from now" resumes from that same point.
    """

    prefix: str | None = None
    key: str | None = None
    start_revision: int | None = None
    resume: bool = True
    prefixes: tuple[str, ...] | None = None  # a set of prefixes, one stream for all
    _last: int | None = field(default=None, init=False)
    _seen_at_last: set[tuple[str, str]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.prefix, self.key, self.prefixes)) != 1:
            raise ValueError("give exactly one of prefix=, key= or prefixes=")
        if self.prefixes is not None:
            self.prefixes = tuple(dict.fromkeys(self.prefixes))
            if not 1 <= len(self.prefixes) <= MAX_WATCH_PREFIXES:
                raise ValueError(f"prefixes= takes 1 to {MAX_WATCH_PREFIXES} prefixes")
            if "" in self.prefixes:
                raise ValueError("an empty prefix in prefixes= (use prefix='' for every key)")
        if self.key == "":
            raise ValueError("key must not be empty")
        if self.start_revision is not None and self.start_revision < 1:
            raise ValueError("start_revision must be >= 1")

    def request(self) -> Request:
        start = self._last if self._last is not None else self.start_revision
        params = _params(prefix=self.prefix, key=self.key, start_revision=start)
        if self.prefixes is not None:
            params = tuple(("prefixes", p) for p in self.prefixes) + params
        return Request("GET", f"{API}/watch", params)

    def handle(self, item: SseMessage | SseComment) -> Event | None:
        """The event `item` carries, None if it carries none (or a repeat); raises on errors."""
        if isinstance(item, SseComment):
            if item.text.startswith(_START_MARK) and self._last is None:
                rest = item.text[len(_START_MARK) :].strip()
                if rest.isdigit() and self.start_revision is None:
                    self.start_revision = int(rest)
            return None
        if item.event == "error":
            raise _watch_error(item.data)
        if item.event not in ("put", "delete"):
            return None
        try:
            event = Event.from_json(json.loads(item.data))
        except (ValueError, KeyError, TypeError) as error:
            raise ShoalError(f"malformed watch event {item.data!r}: {error}") from None
        mark = (event.type, event.kv.key)
        if self._last is not None and event.revision < self._last:
            return None
        if event.revision == self._last:
            if mark in self._seen_at_last:
                return None
        else:
            self._last, self._seen_at_last = event.revision, set()
        self._seen_at_last.add(mark)
        return event

    def reopen(self, error: ShoalError) -> bool:
        """Reconnect after connection trouble (when resuming); a compacted start or a
        server that ended the watch is the caller's to handle."""
        return self.resume and isinstance(error, Unavailable) and retryable(error, True)


def _watch_error(data: str) -> ShoalError:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = {"message": data}
    message = str(payload.get("message") or payload.get("error") or "watch closed by server")
    if payload.get("error") == "compacted":
        return WatchCompacted(message, compact_revision=payload.get("compact_revision"))
    return WatchClosed(message, code=payload.get("error"))


def watch_open_error(status: int, body: bytes) -> ShoalError:
    """The exception for a watch that could not be opened (410 -> `WatchCompacted`)."""
    error = error_for(status, body)
    if isinstance(error, Compacted):
        return WatchCompacted(error.message, compact_revision=error.compact_revision)
    return error
