"""`ControlPlane` and `AsyncControlPlane`: the control plane's `/api/v1` over HTTP.

Both are thin shells around `shoal.client.protocol`, which decides what to send, how to
read the answer and whether to retry; a shell only moves bytes (httpx; the async
shell's unary calls on asyncio go through `shoal.client.aiowire`, ~8x cheaper), reads the
clock and sleeps. Each public method is one line that hands a `Call` to `call()`, or a
`StreamCursor` to `stream()` -- the one loop per shell that opens, reads and resumes every
SSE stream (KV and instance watches, config watches, keep-alive streams) -- so the two
classes cannot drift apart in behaviour. The registry's and the config center's calls
are reached as `cp.registry` and `cp.config`. This is the only module that imports
httpx; its exceptions are translated into `shoal.client.errors` here and nowhere else.

    with ControlPlane("http://127.0.0.1:7700,http://127.0.0.1:7710") as cp:
        revision = cp.put("/config/a", "1")
        for event in cp.watch(prefix="/config/", start_revision=revision):
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import httpx

from . import protocol as ops
from .aiowire import Wire
from .config import AsyncConfigCalls, ConfigCalls
from .errors import ShoalError, Unavailable
from .protocol import Attempts, Call, Consistency, Request, StreamCursor, WatchCursor
from .registry import AsyncRegistryCalls, RegistryCalls
from .sse import SseDecoder
from .types import ClusterStatus, Event, KeyValue, LeaseTimeToLive, Page

__all__ = ["AsyncControlPlane", "ControlPlane"]

T = TypeVar("T")

DEFAULT_ENDPOINT = "http://127.0.0.1:7700"
# The server sends a keep-alive comment every 15 s; three missed ones mean a dead stream.
WATCH_READ_TIMEOUT = 45.0


ENV_TOKEN = "SHOAL_TOKEN"
ENV_WIRE = "SHOAL_CLIENT_WIRE"  # "0": the async shell's unary calls on httpx, not aiowire
ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY = "SHOAL_TLS_CA", "SHOAL_TLS_CERT", "SHOAL_TLS_KEY"


def _security(
    token: str | None, tls_ca: str | None, tls_cert: str | None, tls_key: str | None
) -> dict[str, Any]:
    """httpx options for the ACL token and TLS files: the arguments, else the environment
    (`SHOAL_TOKEN`, `SHOAL_TLS_CA`, `SHOAL_TLS_CERT`, `SHOAL_TLS_KEY`). With a CA the
    server's certificate is checked against it (else against the system's store); with a
    certificate the client presents it (mTLS). TLS 1.2 is the minimum."""
    token = token or os.environ.get(ENV_TOKEN) or None
    tls_ca = tls_ca or os.environ.get(ENV_TLS_CA) or None
    tls_cert = tls_cert or os.environ.get(ENV_TLS_CERT) or None
    tls_key = tls_key or os.environ.get(ENV_TLS_KEY) or None
    options: dict[str, Any] = {}
    if token:
        options["headers"] = {"authorization": f"Bearer {token}"}
    if tls_ca or tls_cert:
        try:
            context = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                context.load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(
                f"cannot load the TLS files (ca {tls_ca}, cert {tls_cert}, key {tls_key}): {error}"
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        options["verify"] = context
    return options


@contextlib.contextmanager
def _translated(url: str) -> Iterator[None]:
    """Turn httpx's exceptions raised inside the block into shoal's."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
        raise Unavailable(f"cannot connect to {url}: {error}", request_sent=False) from error
    except httpx.TimeoutException as error:
        raise Unavailable(f"{url} did not answer in time ({type(error).__name__})") from error
    except httpx.TransportError as error:
        raise Unavailable(f"connection to {url} failed: {error or type(error).__name__}") from error
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise ShoalError(f"request to {url} failed: {error}") from error


class _Shell:
    """What the two shells share: endpoints, timeouts, and the last endpoint that answered."""

    def __init__(self, endpoints: str | Sequence[str], timeout: float, retry_budget: float) -> None:
        self.endpoints = ops.parse_endpoints(endpoints)
        self.timeout = timeout
        self.retry_budget = retry_budget
        self._preferred = 0

    def _attempts(self) -> Attempts:
        return Attempts(self.endpoints, time.monotonic(), self.retry_budget, self._preferred)

    def _watch_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=WATCH_READ_TIMEOUT)

    @staticmethod
    def _args(request: Request) -> dict[str, Any]:
        args: dict[str, Any] = {"params": list(request.params)}
        if request.json is not None:
            args["json"] = request.json
        return args


class ControlPlane(_Shell):
    """A blocking client of the control plane (one `httpx.Client`, thread-safe).

    `token` is sent as `Authorization: Bearer` (ACLs); `tls_ca`/`tls_cert`/`tls_key` are
    PEM files for HTTPS and mTLS. Each defaults to its environment variable
    (`SHOAL_TOKEN`, `SHOAL_TLS_CA`, `SHOAL_TLS_CERT`, `SHOAL_TLS_KEY`).
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        timeout: float = 10.0,
        retry_budget: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        super().__init__(endpoints, timeout, retry_budget)
        security = _security(token, tls_ca, tls_cert, tls_key)
        self._http = httpx.Client(timeout=timeout, transport=transport, **security)
        self.registry = RegistryCalls(self)
        self.config = ConfigCalls(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, call: Call[T]) -> T:
        """Send `call`, trying the endpoints in turn until it answers or the budget is spent."""
        attempts = self._attempts()
        while True:
            request, url = call.request, attempts.endpoint
            try:
                with _translated(url):
                    response = self._http.request(
                        request.method, url + request.path, **self._args(request)
                    )
                self._preferred = attempts.index
                return ops.finish(call, response.status_code, response.content)
            except ShoalError as error:
                now = time.monotonic()
                delay = attempts.after_failure(error, now, call.idempotent, call.repeat_on)
                if delay is None:
                    raise
                time.sleep(delay)

    def stream(self, cursor: StreamCursor[T]) -> Iterator[T]:
        """The values `cursor` makes of an SSE stream, reopened as it says (see
        `StreamCursor`) on any endpoint until the retry budget is spent without progress."""
        attempts = self._attempts()
        while True:
            request, url = cursor.request(), attempts.endpoint
            try:
                with (
                    _translated(url),
                    self._http.stream(
                        request.method,
                        url + request.path,
                        params=list(request.params),
                        timeout=self._watch_timeout(),
                        follow_redirects=True,  # the keep-alive stream lives on the leader
                    ) as response,
                ):
                    if response.status_code != 200:
                        raise ops.watch_open_error(response.status_code, response.read())
                    attempts.progress(time.monotonic())
                    self._preferred = attempts.index
                    decoder = SseDecoder()
                    for chunk in response.iter_bytes():
                        for item in decoder.feed(chunk):
                            value = cursor.handle(item)
                            if value is not None:
                                yield value
                if not cursor.resume:
                    return
                raise Unavailable(f"the stream from {url} ended")
            except ShoalError as error:
                if not cursor.reopen(error):
                    raise
                delay = attempts.after_failure(ops.as_retryable(error), time.monotonic())
                if delay is None:
                    raise
                time.sleep(delay)

    # -- kv ---------------------------------------------------------------------------

    def put(self, key: str, value: str, lease: int | None = None, prev_kv: bool = False) -> int:
        """Set `key` to `value` (attached to `lease`); the revision of the write."""
        return self.call(ops.put(key, value, lease, prev_kv))

    def get(self, key: str, consistency: Consistency = "linearizable") -> KeyValue | None:
        return self.call(ops.get(key, consistency))

    def delete(self, key: str, prefix: bool = False) -> int:
        """Delete `key` (or every key starting with it); how many keys were deleted."""
        return self.call(ops.delete(key, prefix))

    def txn(
        self,
        compare: Sequence[dict[str, Any]],
        success: Sequence[dict[str, Any]],
        failure: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        return self.call(ops.txn(compare, success, failure))

    def compact(self, revision: int) -> int:
        return self.call(ops.compact(revision))

    def pages(
        self, prefix: str = "", page_size: int = 1000, consistency: Consistency = "linearizable"
    ) -> Iterator[Page]:
        """Every page of the listing of `prefix`, all read at the first page's revision."""
        call: Call[Page] | None = ops.list_keys(prefix, page_size, None, consistency)
        while call is not None:
            page = self.call(call)
            yield page
            call = ops.next_page(page, prefix, page_size, consistency)

    def iter_keys(
        self, prefix: str = "", page_size: int = 1000, consistency: Consistency = "linearizable"
    ) -> Iterator[KeyValue]:
        for page in self.pages(prefix, page_size, consistency):
            yield from page.kvs

    def list(
        self,
        prefix: str = "",
        limit: int = 1000,
        after: str | None = None,
        consistency: Consistency = "linearizable",
    ) -> Page:
        """One page of the keys under `prefix` after `after` (see `pages`/`iter_keys`)."""
        return self.call(ops.list_keys(prefix, limit, after, consistency))

    # -- leases -----------------------------------------------------------------------

    def grant(self, ttl: int, id: int | None = None) -> int:
        """Grant a lease of `ttl` seconds; its id."""
        return self.call(ops.grant(ttl, id))

    def keepalive(self, id: int) -> int:
        """Renew lease `id`; its TTL (seconds) from now."""
        return self.call(ops.keepalive(id))

    def revoke(self, id: int) -> tuple[str, ...]:
        """Revoke lease `id`; the keys that went with it."""
        return self.call(ops.revoke(id))

    def time_to_live(self, id: int) -> LeaseTimeToLive:
        return self.call(ops.time_to_live(id))

    # -- cluster ----------------------------------------------------------------------

    def cluster_status(self) -> ClusterStatus:
        return self.call(ops.cluster_status())

    def add_member(
        self,
        name: str,
        peer_addr: str,
        learner: bool = True,
        client_url: str | None = None,
        promote: bool = False,
    ) -> int:
        return self.call(ops.add_member(name, peer_addr, learner, client_url, promote))

    def promote(self, name: str) -> int:
        return self.call(ops.promote(name))

    def remove_member(self, name: str) -> int:
        return self.call(ops.remove_member(name))

    def transfer(self, to: str) -> str:
        return self.call(ops.transfer(to))

    def ready(self) -> dict[str, Any]:
        """`/readyz` of the first endpoint that answers (raises `Unavailable` if none is)."""
        return self.call(ops.ready())

    # -- watch ------------------------------------------------------------------------

    def watch(
        self,
        prefix: str | None = None,
        key: str | None = None,
        start_revision: int | None = None,
        *,
        resume: bool = True,
        prefixes: Iterable[str] | None = None,
    ) -> Iterator[Event]:
        """The events under `prefix` (or of `key`, or under any of a set of `prefixes`:
        one stream, each event once) from `start_revision` (default: now).

        With `resume`, a dropped connection is reopened (on any endpoint) where the
        stream left off, so no event is missed or repeated. Raises `WatchCompacted` when
        the start is older than the kept history and `WatchClosed` when the server ends
        the watch.
        """
        # Bad arguments fail here, at the call, not at the first next().
        return self.stream(WatchCursor(prefix, key, start_revision, resume, _set(prefixes)))


class AsyncControlPlane(_Shell):
    """The asyncio (or trio) twin of `ControlPlane`: the same methods, awaited."""

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        timeout: float = 10.0,
        retry_budget: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        wire: bool | None = None,
    ) -> None:
        super().__init__(endpoints, timeout, retry_budget)
        security = _security(token, tls_ca, tls_cert, tls_key)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, **security)
        # Unary calls on asyncio take the lean wire (aiowire's docstring says why), unless
        # a transport was given, `wire=False` or SHOAL_CLIENT_WIRE=0.
        if wire is None:
            wire = os.environ.get(ENV_WIRE, "") != "0"
        self._wire: Wire | None = None
        if wire and transport is None:
            self._wire = Wire(headers=security.get("headers"), ssl_context=security.get("verify"))
        self.registry = AsyncRegistryCalls(self)
        self.config = AsyncConfigCalls(self)

    async def aclose(self) -> None:
        if self._wire is not None:
            self._wire.close()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncControlPlane:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, call: Call[T]) -> T:
        attempts = self._attempts()
        while True:
            request, url = call.request, attempts.endpoint
            try:
                status, body = await self._send(request, url)
                self._preferred = attempts.index
                return ops.finish(call, status, body)
            except ShoalError as error:
                now = time.monotonic()
                delay = attempts.after_failure(error, now, call.idempotent, call.repeat_on)
                if delay is None:
                    raise
                await anyio.sleep(delay)

    async def _send(self, request: Request, url: str) -> tuple[int, bytes]:
        wire = self._wire
        if wire is not None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # not asyncio (trio): httpx
                pass
            else:
                body = None
                if request.json is not None:  # encoded as httpx encodes it
                    body = json.dumps(
                        request.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
                    ).encode()
                return await wire.request(
                    url, request.method, request.path, request.params, body, self.timeout
                )
        with _translated(url):
            response = await self._http.request(
                request.method, url + request.path, **self._args(request)
            )
        return response.status_code, response.content

    async def stream(self, cursor: StreamCursor[T]) -> AsyncIterator[T]:
        """As `ControlPlane.stream`, iterated with `async for`."""
        attempts = self._attempts()
        while True:
            request, url = cursor.request(), attempts.endpoint
            try:
                with _translated(url):
                    async with self._http.stream(
                        request.method,
                        url + request.path,
                        params=list(request.params),
                        timeout=self._watch_timeout(),
                        follow_redirects=True,
                    ) as response:
                        if response.status_code != 200:
                            body = await response.aread()
                            raise ops.watch_open_error(response.status_code, body)
                        attempts.progress(time.monotonic())
                        self._preferred = attempts.index
                        decoder = SseDecoder()
                        async for chunk in response.aiter_bytes():
                            for item in decoder.feed(chunk):
                                value = cursor.handle(item)
                                if value is not None:
                                    yield value
                if not cursor.resume:
                    return
                raise Unavailable(f"the stream from {url} ended")
            except ShoalError as error:
                if not cursor.reopen(error):
                    raise
                delay = attempts.after_failure(ops.as_retryable(error), time.monotonic())
                if delay is None:
                    raise
                await anyio.sleep(delay)

    # -- kv ---------------------------------------------------------------------------

    async def put(
        self, key: str, value: str, lease: int | None = None, prev_kv: bool = False
    ) -> int:
        return await self.call(ops.put(key, value, lease, prev_kv))

    async def get(self, key: str, consistency: Consistency = "linearizable") -> KeyValue | None:
        return await self.call(ops.get(key, consistency))

    async def delete(self, key: str, prefix: bool = False) -> int:
        return await self.call(ops.delete(key, prefix))

    async def txn(
        self,
        compare: Sequence[dict[str, Any]],
        success: Sequence[dict[str, Any]],
        failure: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        return await self.call(ops.txn(compare, success, failure))

    async def compact(self, revision: int) -> int:
        return await self.call(ops.compact(revision))

    async def pages(
        self, prefix: str = "", page_size: int = 1000, consistency: Consistency = "linearizable"
    ) -> AsyncIterator[Page]:
        call: Call[Page] | None = ops.list_keys(prefix, page_size, None, consistency)
        while call is not None:
            page = await self.call(call)
            yield page
            call = ops.next_page(page, prefix, page_size, consistency)

    async def iter_keys(
        self, prefix: str = "", page_size: int = 1000, consistency: Consistency = "linearizable"
    ) -> AsyncIterator[KeyValue]:
        async for page in self.pages(prefix, page_size, consistency):
            for kv in page.kvs:
                yield kv

    async def list(
        self,
        prefix: str = "",
        limit: int = 1000,
        after: str | None = None,
        consistency: Consistency = "linearizable",
    ) -> Page:
        return await self.call(ops.list_keys(prefix, limit, after, consistency))

    # -- leases -----------------------------------------------------------------------

    async def grant(self, ttl: int, id: int | None = None) -> int:
        return await self.call(ops.grant(ttl, id))

    async def keepalive(self, id: int) -> int:
        return await self.call(ops.keepalive(id))

    async def revoke(self, id: int) -> tuple[str, ...]:
        return await self.call(ops.revoke(id))

    async def time_to_live(self, id: int) -> LeaseTimeToLive:
        return await self.call(ops.time_to_live(id))

    # -- cluster ----------------------------------------------------------------------

    async def cluster_status(self) -> ClusterStatus:
        return await self.call(ops.cluster_status())

    async def add_member(
        self,
        name: str,
        peer_addr: str,
        learner: bool = True,
        client_url: str | None = None,
        promote: bool = False,
    ) -> int:
        return await self.call(ops.add_member(name, peer_addr, learner, client_url, promote))

    async def promote(self, name: str) -> int:
        return await self.call(ops.promote(name))

    async def remove_member(self, name: str) -> int:
        return await self.call(ops.remove_member(name))

    async def transfer(self, to: str) -> str:
        return await self.call(ops.transfer(to))

    async def ready(self) -> dict[str, Any]:
        return await self.call(ops.ready())

    # -- watch ------------------------------------------------------------------------

    def watch(
        self,
        prefix: str | None = None,
        key: str | None = None,
        start_revision: int | None = None,
        *,
        resume: bool = True,
        prefixes: Iterable[str] | None = None,
    ) -> AsyncIterator[Event]:
        """As `ControlPlane.watch`, iterated with `async for`."""
        return self.stream(WatchCursor(prefix, key, start_revision, resume, _set(prefixes)))


def _set(prefixes: Iterable[str] | None) -> tuple[str, ...] | None:
    if isinstance(prefixes, str):
        raise ValueError("prefixes= is a collection of prefixes, not one string")
    return None if prefixes is None else tuple(prefixes)
