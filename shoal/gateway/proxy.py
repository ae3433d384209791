"""The hot path: one asyncio protocol per client connection, one `Exchange` per request.

Theory of operation
-------------------

`ClientConnection` feeds the client's bytes to an httptools request parser. A request's
head, once complete, starts its `Exchange`: route (`Routing.table.match`), rate limit,
body limit, then a `CallPlan` over the route's `Upstream` picks an instance, and the
request head goes out on a pooled keep-alive connection (`shoal.gateway.pool`) -- or a
new one -- at once; the body follows chunk by chunk as it arrives. The upstream's
response is parsed by that connection's parser and relayed chunk by chunk: nothing is
buffered whole, in either direction.

Flow control both ways: a client that does not read pauses reading from the upstream
(`pause_writing` on the client transport), an upstream that does not read pauses
reading from the client; while no upstream connection is ready, at most
`BUFFER_LIMIT` body bytes wait before the client is paused.

Framing. The upstream always gets HTTP/1.1: Content-Length when the client sent one,
chunked (re-framed) when the client's body was chunked. The client gets the upstream's
Content-Length, or chunked when the upstream's body was chunked or delimited by close
(an HTTP/1.0 client gets a close-delimited body instead). Hop-by-hop headers (RFC 9110
7.6.1, and those named in Connection) are dropped both ways. `X-Forwarded-For` is
appended to, `X-Forwarded-Proto` and `-Host` set when absent, `x-request-id` kept or
made, and `traceparent` continued with the gateway's own span (`shoal.observe.trace`).
`Expect: 100-continue` is answered by the gateway itself once the route, rate and body
limits pass (and not sent on); any other expectation is a 417. HEAD answers carry no
body. Upgrade and CONNECT get a 501: the gateway does not tunnel.

Retries. The plan decides (`shoal.resilience.call`): idempotent requests (GET, HEAD,
OPTIONS, PUT, DELETE, TRACE) after a reset, a timeout or a 502/503/504; any request
after a refused connection, which sent nothing. On top of the plan's rules the gateway
can retry only while two things hold: no byte of the response has gone to the client,
and the whole request body is still held -- bodies up to `REPLAY_LIMIT` (64 KiB) are
kept for a replay, a longer one is let go as it is sent and its request is not retried
once any of it went out. A 5xx that will be retried is discarded with its connection.
An idempotent request's good response head is held until its body's first byte or its
end arrives (at most HEAD_HOLD plus a tick, ~10-20 ms): an instance killed between
writing its head and its body -- uvicorn writes them apart -- is retried like one
killed before answering, where relaying the head would have left the client a cut-off
body.

Timeouts. An attempt's timeout (the policy's, within the overall deadline) runs from
the moment the request is fully sent (or from connecting) to the response's head;
after the head, and while a body is uploaded, the route's `idle_timeout` limits the
time between two reads or writes (nginx's proxy_read_timeout, not a cap on a long
download). The attempt's outcome -- what the balancer, breaker and outlier detector
learn -- is taken at the response head.

Pipelined requests are answered in order: a request that arrives while another is in
flight waits, and reading pauses until its turn. Malformed HTTP gets a 400 and the
connection closes; nothing else is affected.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from ..observe import otel
from ..observe.trace import trace_from_headers
from ..resilience import Outcome
from ..resilience.call import Attempt, Backoff, CallPlan, Done, StopReason
from .errors import ERRORS, error_response, status_line
from .metrics import CONNECTIONS, stats_for
from .pool import WRITE_HIGH, WRITE_LOW, ConnectionPool, UpstreamConnection
from .spans import ProxySpan
from .writes import DIRECT, flush

if TYPE_CHECKING:
    from collections.abc import Callable

    from .access import AccessLog
    from .runtime import RouteRuntime, Routing, UpstreamSet

log = logging.getLogger("shoal.gateway")

__all__ = ["BUFFER_LIMIT", "REPLAY_LIMIT", "ClientConnection", "ProxyContext"]

REPLAY_LIMIT = 64 * 1024  # request body bytes kept so that the request can be retried
BUFFER_LIMIT = 256 * 1024  # body bytes held while no upstream connection is ready
VIEW_WAIT = 5.0  # how long a request waits for the first view of its service
KEEPALIVE_TIMEOUT = 75.0  # an idle client connection is closed after this (nginx's default)
HEADER_TIMEOUT = 30.0  # a request head must arrive within this
LINGER = 5.0  # how long the rest of an answered request's body is read and dropped

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
CRLF = b"\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

# Request headers the parser pass looks at (lower-case name -> what it is).
_HOST, _LENGTH, _TE, _CONNECTION, _EXPECT, _XFF, _XFP, _XFH, _RID, _TRACE = range(10)
_SPECIAL = {
    b"host": _HOST,
    b"content-length": _LENGTH,
    b"transfer-encoding": _TE,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
    b"x-request-id": _RID,
    b"traceparent": _TRACE,
}
# Connection tokens that are not header names.
_CONNECTION_WORDS = frozenset({b"close", b"keep-alive", b""})

# What a response header is to the proxy, by lower-case name (`_response_kind`); cached
# per route (`RouteRuntime.response_kinds`) by the name as the upstream spelled it, for
# up to _KINDS_CACHED names, so that memory stays bounded whatever upstreams send.
_KEEP, _DROP = "keep", "drop"
_LENGTH_HEADER, _TE_HEADER, _CONNECTION_HEADER = "content-length", "transfer-encoding", "connection"
_KINDS_CACHED = 256


def _response_kind(lname: bytes, drop: frozenset[bytes]) -> str:
    if lname not in drop:
        return _KEEP
    if lname == b"content-length":
        return _LENGTH_HEADER
    if lname == b"transfer-encoding":
        return _TE_HEADER
    if lname == b"connection":
        return _CONNECTION_HEADER
    return _DROP


# Why reading from a client is paused (bits; reading resumes when none is left).
_PIPELINE, _UPSTREAM_FULL, _BODY_WAIT = 1, 2, 4

_SUCCESS, _FAILURE = Outcome.SUCCESS, Outcome.FAILURE
_SUCCESS_NAME, _FAILURE_NAME = _SUCCESS.value, _FAILURE.value  # (Enum.value is a descriptor)
UNMATCHED = stats_for("unmatched", "-")  # requests answered before a route was known
_INF = math.inf
TICK = 0.01  # how often deadlines and stalls are checked: timeouts fire within 10 ms
HEAD_HOLD = TICK  # a good head waits up to this (+ a tick) for its body's first byte


def _ignore(_header: tuple[bytes, bytes, bytes]) -> None:
    """`ClientConnection.add_header` before the first request begins (never called)."""


class ProxyContext:
    """What every connection of one gateway process shares."""

    __slots__ = (
        "access_log",
        "connections",
        "draining",
        "loop",
        "pool",
        "rng",
        "routing",
        "spans",
        "timed",
        "upstreams",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        routing: Routing,
        upstreams: UpstreamSet,
        pool: ConnectionPool,
        access_log: AccessLog | None,
        rng: random.Random,
    ) -> None:
        self.loop, self.routing, self.upstreams, self.pool = loop, routing, upstreams, pool
        self.access_log, self.rng = access_log, rng
        self.connections: set[ClientConnection] = set()
        self.timed: set[Exchange] = set()  # exchanges with a deadline or a stall to watch
        self.draining = False
        self.spans = otel.enabled()  # read once: with export off, no span is ever built
        loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        """Every TICK: deadlines and stalls (cheaper than a loop timer per request)."""
        if self.timed:
            now = time.monotonic()
            for exchange in list(self.timed):
                try:
                    exchange.tick(now)
                except Exception:  # a bug in one request must not stop every timeout
                    log.exception("timeout handling failed")
                    self.timed.discard(exchange)
        self.loop.call_later(TICK, self._tick)


class ClientConnection(asyncio.Protocol):
    """One client connection; see the module docstring."""

    __slots__ = (
        "active",
        "add_header",
        "broken",
        "closed",
        "ctx",
        "idle_since",
        "linger_until",
        "parser",
        "parsing",
        "paused",
        "peer",
        "pending",
        "queue",
        "transport",
        "write_paused",
    )

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b"-"
        self.active: Exchange | None = None  # the request being answered
        self.parsing: Exchange | None = None  # the request being read (may be queued)
        self.add_header: Callable[[tuple[bytes, bytes, bytes]], None] = _ignore
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.paused = 0
        self.pending: list[bytes] = []  # written this iteration (`shoal.gateway.writes`)
        self.write_paused = False
        self.closed = False
        self.broken: str | None = None
        self.idle_since = time.monotonic()
        self.linger_until = 0.0

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        self.ctx.connections.add(self)
        CONNECTIONS.inc()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the exchange answered 501 and the connection closes after it
        except httptools.HttpParserError as error:
            self._malformed(str(error) or type(error).__name__)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        CONNECTIONS.dec()
        active, self.active = self.active, None
        if active is not None:
            active.abort("the client closed the connection")
        while self.queue:
            self.queue.popleft().abort("the client closed the connection")

    def pause_writing(self) -> None:
        self.write_paused = True
        active = self.active
        if active is not None and active.up is not None:
            active.up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        active = self.active
        if active is not None and active.up is not None:
            active.up.resume_reading()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        exchange = Exchange(self)
        self.parsing = exchange
        self.add_header = exchange.headers.append
        if self.active is None:
            self.active = exchange
        else:
            self.queue.append(exchange)
            self.pause(_PIPELINE)

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Each header is looked at once, as it is parsed: its lower-case name (for the
        # drop sets), and the few the proxy reads.
        lname = name.lower()
        self.add_header((lname, name, value))  # the parsing exchange's headers.append
        kind = _SPECIAL.get(lname)
        if kind is not None:
            exchange = self.parsing
            assert exchange is not None
            exchange.special_header(kind, value)

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        exchange.head_complete(self.parser)
        if exchange is self.active:
            exchange.start()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.request_body(body)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        if exchange is not None:
            exchange.request_complete()
        if self.linger_until:
            self.close()

    # -- for exchanges ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed:
            pending = self.pending
            if len(data) >= DIRECT:  # a streaming body: at once, so that flow control acts
                self.flush()
                if self.transport is not None:
                    self.transport.write(data)
                return
            if not pending:
                self.ctx.pool.writes.enrol(self)
            pending.append(data)

    def flush(self) -> None:
        flush(self)

    def pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        if exchange is not self.active:
            return
        self.active = None
        # Whatever held reading back for that exchange's body holds it no longer.
        if self.paused:
            self.resume(_UPSTREAM_FULL | _BODY_WAIT)
        if self.broken is not None:
            if keep_alive:  # a later pipelined request was malformed: say so, then close
                self.write(error_response("bad_request", self.broken, keep_alive=False))
            self.close()
            return
        if not keep_alive:
            if self.parsing is exchange:
                # Answered before its body was all read (an error, or an early answer):
                # read and drop the rest for a while before closing, so that the client
                # is not reset while still sending and can read the answer (nginx's
                # lingering close).
                self.linger_until = time.monotonic() + LINGER
                return
            self.close()
            return
        self.idle_since = time.monotonic()
        if self.queue:
            following = self.queue.popleft()
            self.active = following
            if not self.queue:
                self.resume(_PIPELINE)
            if following.head_parsed:
                following.start()

    def close(self) -> None:
        """Close after what was written is sent (the transport flushes first)."""
        if not self.closed and self.transport is not None:
            self.flush()
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Close at once: the response cannot be completed."""
        if self.transport is not None:
            self.flush()  # as far as it gets before the reset, as without coalescing
            self.closed = True
            self.transport.abort()

    def _malformed(self, problem: str) -> None:
        message = f"malformed HTTP request: {problem}"
        active = self.active
        if active is not None and active.started and not active.finished:
            if not active.request_done:  # its own body is broken
                active.bad_body(message)
                return
            self.broken = message  # a later pipelined request: answered after this one
            self.pause(_PIPELINE)
            return
        self.queue.clear()
        self.active = self.parsing = None
        UNMATCHED.rejected_for("bad_request")
        self.write(error_response("bad_request", message, keep_alive=False))
        self.close()

    def sweep(self, now: float) -> None:
        """Close the connection if idle too long, or if a request head never completed."""
        if self.linger_until and now > self.linger_until:
            self.close()
            return
        active = self.active
        if active is None:
            if now - self.idle_since > KEEPALIVE_TIMEOUT or self.ctx.draining:
                self.close()
        elif not active.head_parsed and now - active.t0 > HEADER_TIMEOUT:
            self.close()


class Exchange:
    """One request and its response; see the module docstring.

    No __slots__: most of these defaults are never changed by a plain GET, and class
    attributes cost nothing per request where 60 slot stores would (~2 us).
    """

    # the request
    host: bytes | None = None
    content_length: int | None = None
    chunked = False
    request_tokens = b""
    expect: bytes | None = None
    xff: bytes | None = None
    has_xfp = has_xfh = False
    rid_in: bytes | None = None
    trace_in: bytes | None = None
    method = b""
    path = query = b""
    version = "1.1"
    client_keep_alive = True
    upgrade = False
    expects_body = False
    head_parsed = started = request_done = finished = False
    body_size = 0
    body_dropped = False
    body_chunks: list[bytes] | tuple[()] = ()  # a list from the first chunk held (_hold)
    # routing and the plan
    rt: RouteRuntime | None = None
    plan: CallPlan[int] | None = None
    plan_done = False
    attempt: Attempt | None = None
    head = b""
    rid = b""  # the x-request-id sent both ways (bytes: it is only ever written)
    instance = ""
    last_outcome: Outcome | None = None
    last_problem = ""
    timed_out = False
    span: ProxySpan | None = None  # only while spans are exported (`shoal.gateway.spans`)
    # timers: `deadline` (the attempt's) and `watching` (idle_timeout) are checked by
    # the context's tick; the rare ones (backoff, waiting for a view) are loop timers
    deadline = math.inf
    watching = False
    timer: asyncio.TimerHandle | None = None
    wait_cancel: Callable[[], None] | None = None
    # the upstream side
    up: UpstreamConnection | None = None
    connecting: asyncio.Task[None] | None = None
    # the response
    status = 0
    resp_length: bytes | None = None
    resp_chunked = False
    resp_tokens = b""
    # a good head held back (`response_head`): status, keep-alive, headers, arrival time
    held: tuple[int, bool, list[tuple[bytes, bytes]], float] | None = None
    upstream_keep_alive = False
    to_client_chunked = False
    keep_alive = False
    bytes_out = 0
    error: str | None = None

    def __init__(self, conn: ClientConnection) -> None:
        self.conn, self.ctx = conn, conn.ctx
        self.t0 = self.last_io = time.monotonic()
        self.url = b""
        self.headers: list[tuple[bytes, bytes, bytes]] = []  # (lower-case name, name, value)
        self.out: list[bytes] = []

    # -- the request, as the parser reads it --------------------------------------------

    def special_header(self, kind: int, value: bytes) -> None:
        """A header the proxy reads (`_SPECIAL`), as the parser reads it."""
        if kind == _HOST:
            self.host = value
        elif kind == _LENGTH:
            self.content_length = int(value)  # the parser has validated it
        elif kind == _TE:
            self.chunked = value.lower().rstrip().endswith(b"chunked")
        elif kind == _CONNECTION:
            self.request_tokens = value.lower()
        elif kind == _EXPECT:
            self.expect = value.strip().lower()
        elif kind == _XFF:
            self.xff = value if self.xff is None else self.xff + b", " + value
        elif kind == _XFP:
            self.has_xfp = True
        elif kind == _XFH:
            self.has_xfh = True
        elif kind == _RID:
            self.rid_in = value
        else:
            self.trace_in = value

    def head_complete(self, parser: httptools.HttpRequestParser) -> None:
        self.method = parser.get_method()
        self.version = parser.get_http_version()
        self.client_keep_alive = parser.should_keep_alive()
        self.upgrade = parser.should_upgrade() or self.method == b"CONNECT"
        url = self.url
        if url[:1] == b"/":
            mark = url.find(b"?")
            if mark < 0:
                self.path = url
            else:
                self.path, self.query = url[:mark], url[mark:]
        else:  # absolute form (http://host/path), or "*"
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self.path = url
            else:
                self.path = parsed.path or b"/"
                self.query = b"?" + parsed.query if parsed.query else b""
                if self.host is None and parsed.host:
                    port = b":%d" % parsed.port if parsed.port else b""
                    self.host = parsed.host + port
        self.expects_body = self.chunked or (self.content_length or 0) > 0
        self.head_parsed = True

    def request_body(self, chunk: bytes) -> None:
        if self.finished:
            return  # answered already (an error, or an early response): discard
        self.body_size += len(chunk)
        self.last_io = time.monotonic()
        rt = self.rt
        if rt is not None and self.body_size > rt.route.max_body:
            self._too_large()
            return
        up = self.up
        if up is not None:
            up.write(self._frame(chunk))
            if self.body_dropped:
                return
            if self.body_size <= REPLAY_LIMIT:
                self._hold(chunk)
            else:
                self.body_chunks = []
                self.body_dropped = True
            return
        self._hold(chunk)
        if self.body_size > BUFFER_LIMIT:
            self.conn.pause(_BODY_WAIT)

    def _hold(self, chunk: bytes) -> None:
        """Keep a chunk of the body (for a replay, or until a connection is ready); the
        list is made for the first one, so that a GET makes none."""
        chunks = self.body_chunks
        if chunks:
            chunks.append(chunk)  # (a non-empty one is the list)
        else:
            self.body_chunks = [chunk]

    def request_complete(self) -> None:
        self.request_done = True
        if self.finished:
            return
        up = self.up
        if up is not None and self.expects_body:
            if self.chunked:
                up.write(LAST_CHUNK)
            self._arm_attempt_timer()

    def _frame(self, chunk: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk

    # -- routing and the plan ----------------------------------------------------------

    def start(self) -> None:
        self.started = True
        if self.upgrade:
            what = "CONNECT" if self.method == b"CONNECT" else "Upgrade"
            self._fail("upgrade_not_supported", f"the gateway does not tunnel ({what})", close=True)
            return
        ctx = self.ctx
        routing = ctx.routing
        match = routing.table.match(self.host or b"", self.path)
        if match is None:
            host, path = (self.host or b"").decode("latin-1"), self.path.decode("latin-1")
            self._fail("no_route", f"no route for host {host!r} path {path!r}")
            return
        rt = routing.runtimes[match.route.name]
        self.rt = rt
        route = rt.route
        if rt.limiter is not None and not self._admitted(rt):
            return
        size = self.content_length if self.content_length is not None else self.body_size
        if size > route.max_body:
            self._too_large()
            return
        if self.expect is not None:
            if self.expect != b"100-continue":
                expectation = self.expect.decode("latin-1")
                self._fail("expectation_failed", f"unsupported Expect: {expectation}", close=True)
                return
            if not self.request_done:
                self.conn.write(CONTINUE)
        self.head = self._request_head(rt, match.target)
        upstream = rt.upstream
        if upstream.view.snapshot is None:
            self._wait_for_view()
            return
        self._begin_plan()

    def _admitted(self, rt: RouteRuntime) -> bool:
        limiter, spec = rt.limiter, rt.route.rate_limit
        assert limiter is not None and spec is not None
        header = rt.limit_header
        if header is None:
            key, who = self.conn.peer.decode("latin-1"), "client address"
        else:
            value = next(
                (v for n, _, v in self.headers if n == header),
                None,
            )
            if value is None:  # no key given: the client address stands in
                key, who = "addr:" + self.conn.peer.decode("latin-1"), "client address"
            else:
                key, who = "key:" + value.decode("latin-1"), f"{header.decode()} value"
        now = time.monotonic()
        if limiter.try_take(key, now):
            return True
        wait = limiter.retry_after(key, now)
        self._fail(
            "rate_limited",
            f"route {rt.route.name} allows {spec.rate:g} requests/s per {who} "
            f"(bursts of {spec.burst:g}); retry in {wait:.2f} s",
            extra=(("retry-after", str(max(1, math.ceil(wait)))),),
        )
        return False

    def _request_head(self, rt: RouteRuntime, target: bytes) -> bytes:
        drop = rt.request_drop
        if self.request_tokens and self.request_tokens not in _CONNECTION_WORDS:
            named = {t.strip() for t in self.request_tokens.split(b",")} - _CONNECTION_WORDS
            if named:
                drop = drop | named
        parts = [self.method, b" ", target, self.query, b" HTTP/1.1\r\n"]
        for lname, name, value in self.headers:
            if lname not in drop:
                parts += (name, b": ", value, CRLF)
        parts.append(rt.request_add)
        if self.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif self.content_length is not None:
            parts.append(b"content-length: %d\r\n" % self.content_length)
        peer = self.conn.peer
        parts += (b"x-forwarded-for: ", self.xff + b", " + peer if self.xff else peer, CRLF)
        if not self.has_xfp:
            parts.append(b"x-forwarded-proto: http\r\n")
        if not self.has_xfh and self.host:
            parts += (b"x-forwarded-host: ", self.host, CRLF)
        if self.rid_in is None and self.trace_in is None:
            # The common case, without the frozen dataclass: a new trace (128 bits) and
            # this span (64) from one draw; the request id is the trace id's first half,
            # as `shoal.observe.trace` makes it.
            ids = b"%048x" % self.ctx.rng.getrandbits(192)
            self.rid = rid = ids[:16]
            parts += (b"x-request-id: ", rid, b"\r\ntraceparent: 00-", ids[:32], b"-", ids[32:])
            parts.append(b"-01\r\n")
            if self.ctx.spans:
                self.span = ProxySpan(ids[:32].decode(), ids[32:].decode(), None, True)
            return b"".join(parts)
        seen = {}
        if self.rid_in is not None:
            seen["x-request-id"] = self.rid_in.decode("latin-1")
        if self.trace_in is not None:
            seen["traceparent"] = self.trace_in.decode("latin-1")
        trace = trace_from_headers(seen)
        self.rid = trace.request_id.encode()
        parts += (b"x-request-id: ", self.rid, CRLF)
        parts += (b"traceparent: ", trace.traceparent.encode(), CRLF)
        if self.ctx.spans:
            self.span = ProxySpan(trace.trace_id, trace.span_id, trace.parent_id, trace.sampled)
        return b"".join(parts)

    def _wait_for_view(self) -> None:
        ctx = self.ctx
        assert self.rt is not None
        service = self.rt.route.service
        self.timer = ctx.loop.call_later(VIEW_WAIT, self._view_timeout)
        self.wait_cancel = ctx.upstreams.when_ready(service, self._view_ready)

    def _view_ready(self) -> None:
        self.wait_cancel = None
        if self.finished:
            return
        self._cancel_timer()
        self._begin_plan()

    def _view_timeout(self) -> None:
        self.timer = None
        cancel, self.wait_cancel = self.wait_cancel, None
        if cancel is not None:
            cancel()
        if not self.finished:
            assert self.rt is not None
            view = self.rt.upstream.view
            why = f": {view.last_error}" if view.last_error else ""
            self._fail(
                "no_healthy_upstream",
                f"no view of service {self.rt.route.service!r} yet "
                f"(is the control plane reachable?{why})",
            )

    def _begin_plan(self) -> None:
        rt = self.rt
        assert rt is not None
        upstream = rt.upstream
        now = time.monotonic()
        plan: CallPlan[int] = CallPlan(
            upstream.call_policy, upstream, self.method in IDEMPOTENT, now, self.ctx.rng
        )
        self.plan = plan
        step = plan.next(now)
        if type(step) is Attempt:  # the common case, without _take's dispatch
            self._start_attempt(step)
        else:
            self._take(step)

    def _take(self, step: Attempt | Backoff | Done[int]) -> None:
        if isinstance(step, Attempt):
            self._start_attempt(step)
        elif isinstance(step, Backoff):
            assert self.rt is not None
            self.rt.stats.retries += 1
            self.timer = self.ctx.loop.call_later(step.delay, self._after_backoff)
        else:
            self._plan_over(step)

    def _after_backoff(self) -> None:
        self.timer = None
        if not self.finished and self.plan is not None:
            self._take(self.plan.next(time.monotonic()))

    def _start_attempt(self, attempt: Attempt) -> None:
        rt = self.rt
        assert rt is not None
        self.attempt = attempt
        self.instance = attempt.host
        endpoint = rt.upstream.endpoint(attempt.host)
        if endpoint is None:  # it left the pool between the pick and now
            self._attempt_failed(Outcome.CONNECT_FAILURE, "left the pool")
            return
        pool = self.ctx.pool
        addr = pool.address(endpoint.base_url)
        up = pool.acquire(addr)
        if up is not None:
            self._bind(up)
            return
        rt.stats.connects += 1
        self.connecting = self.ctx.loop.create_task(self._connect(addr, attempt))
        self._arm_attempt_timer()  # connecting counts against the attempt

    async def _connect(self, addr: tuple[str, int], attempt: Attempt) -> None:
        pool = self.ctx.pool
        try:
            up = await pool.connect(addr)
        except asyncio.CancelledError:
            return  # the attempt timed out, or the client went away
        except OSError as error:
            if self.attempt is attempt and not self.finished:
                self.connecting = None
                reason = error.strerror or str(error) or type(error).__name__
                self._attempt_failed(Outcome.CONNECT_FAILURE, f"could not be reached ({reason})")
            return
        if self.attempt is attempt and not self.finished:
            self.connecting = None
            self.deadline = math.inf
            self._bind(up)
        else:
            pool.release(up)  # nobody waits for it any more: keep it for the next request

    def _bind(self, up: UpstreamConnection) -> None:
        self.up = up
        up.attach(self, head_only=self.method == b"HEAD")
        if self.conn.write_paused:
            up.pause_reading()
        if self.host is None:
            host, port = up.addr
            head = self.head + b"host: %b:%d\r\n\r\n" % (host.encode(), port)
        else:
            head = self.head + CRLF
        if self.body_chunks:
            parts = [head]
            parts.extend(self._frame(c) for c in self.body_chunks)
            if self.request_done and self.chunked:
                parts.append(LAST_CHUNK)
            up.write(b"".join(parts))
            if self.body_size > REPLAY_LIMIT:
                self.body_chunks = []
                self.body_dropped = True
            self.conn.resume(_BODY_WAIT)
        elif self.request_done and self.chunked:
            up.write(head + LAST_CHUNK)
        else:
            up.write(head)
        if self.request_done or not self.expects_body:
            # The attempt's timeout runs from here (a GET's message completes right after
            # its head): _arm_attempt_timer, inline on the path every request takes.
            timeout = self.attempt.timeout if self.attempt is not None else _INF
            if timeout != _INF:
                self.deadline = time.monotonic() + timeout
                self.ctx.timed.add(self)
        else:
            self._arm_watchdog()

    def _arm_attempt_timer(self) -> None:
        attempt = self.attempt
        if attempt is not None and attempt.timeout != math.inf:
            self.deadline = time.monotonic() + attempt.timeout
            self.ctx.timed.add(self)

    def tick(self, now: float) -> None:
        """The context's tick: fire the attempt's deadline, watch for a stalled body."""
        if self.finished:
            self.ctx.timed.discard(self)
        elif self.held is not None:
            if now >= self.held[3] + HEAD_HOLD:  # no body byte in time: the head goes alone
                self._release_head()
                self.response_flush()
        elif now >= self.deadline:
            self.deadline = math.inf
            self._attempt_timeout()
        elif self.watching:
            assert self.rt is not None
            if now - self.last_io >= self.rt.route.idle_timeout:
                self.watching = False
                self._stalled()
        elif self.deadline == math.inf:
            self.ctx.timed.discard(self)

    def _attempt_timeout(self) -> None:
        attempt = self.attempt
        if attempt is None or self.finished:
            return
        self.timed_out = True
        connecting, self.connecting = self.connecting, None
        if connecting is not None:
            connecting.cancel()
            outcome = Outcome.CONNECT_FAILURE  # nothing was sent: any request may retry
            problem = f"did not accept a connection within {attempt.timeout:g} s"
        else:
            outcome = Outcome.TIMEOUT
            problem = f"did not answer within {attempt.timeout:g} s"
        up, self.up = self.up, None
        if up is not None:
            up.close()
        self._attempt_failed(outcome, problem)

    def _attempt_failed(self, outcome: Outcome, problem: str) -> None:
        self.deadline = math.inf
        attempt, self.attempt = self.attempt, None
        plan, rt = self.plan, self.rt
        assert plan is not None and attempt is not None and rt is not None
        now = time.monotonic()
        rt.stats.attempt(outcome.value)
        plan.record(attempt, now, outcome)
        self.last_outcome = outcome
        endpoint = rt.upstream.endpoint(attempt.host)
        where = f" ({endpoint.base_url.removeprefix('http://')})" if endpoint else ""
        self.last_problem = f"instance {attempt.host}{where} {problem}"
        if self.span is not None:
            self.span.attempt_failed(attempt.number, attempt.host, outcome.value, problem)
        if self.body_dropped:  # part of the body is gone: this request cannot be sent again
            self.plan_done = True
            self._plan_over(plan.cancel(None, now))
            return
        self._take(plan.next(now))

    def _plan_over(self, done: Done[int]) -> None:
        """The plan ended without a response to relay: answer with the reason."""
        self.plan_done = True
        rt = self.rt
        assert rt is not None
        service = rt.route.service
        attempts = f"after {done.attempts} attempt(s)"
        if done.attempts == 0 or (done.reason == StopReason.NO_HOST and not self.last_problem):
            upstream = rt.upstream
            if upstream.view.snapshot is None:
                self._fail("no_healthy_upstream", f"no view of service {service!r} yet")
            elif not upstream.describe():
                self._fail("no_healthy_upstream", f"service {service!r} has no healthy instance")
            else:
                self._fail(
                    "circuit_open",
                    f"every instance of {service!r} is refusing calls (circuit open "
                    "or ejected after failures)",
                )
            return
        budget = ""
        if done.reason == StopReason.BUDGET_EXHAUSTED:
            budget = "; no retry: the retry budget is spent"
        elif self.body_dropped:
            budget = "; no retry: the request body was too large to replay"
        message = f"upstream {service!r} failed {attempts}: {self.last_problem}{budget}"
        deadline = done.reason == StopReason.DEADLINE_EXCEEDED and not self.body_dropped
        if self.timed_out or deadline:
            self._fail("upstream_timeout", message)
        else:
            self._fail("upstream_failed", message)

    # -- the response (ResponseSink) -----------------------------------------------------

    def response_head(
        self, status: int, keep_alive: bool, headers: list[tuple[bytes, bytes]]
    ) -> None:
        now = time.monotonic()
        if status < 500 and self.method in IDEMPOTENT and not self.body_dropped:
            # Hold a good head until the first body byte (or the end) arrives, at most
            # HEAD_HOLD: an instance killed between writing its head and its body is then
            # retried like one killed before answering, not relayed as a cut-off body.
            # (One attribute: each new one in the instance's dict costs every request.)
            self.held = (status, keep_alive, headers, now)
            if self.deadline == _INF:  # (a finite deadline is in the tick's set already)
                self.ctx.timed.add(self)
            self.deadline = _INF
            return
        self._accept_head(status, keep_alive, headers, now)

    def _release_head(self) -> None:
        held, self.held = self.held, None
        assert held is not None
        self._accept_head(*held)

    def _accept_head(
        self, status: int, keep_alive: bool, headers: list[tuple[bytes, bytes]], now: float
    ) -> None:
        plan, attempt, rt = self.plan, self.attempt, self.rt
        assert plan is not None and attempt is not None and rt is not None
        self.deadline = math.inf
        self.attempt = None
        if status >= 500:
            outcome = _FAILURE
            rt.stats.attempt(_FAILURE_NAME)
        else:
            outcome = _SUCCESS
            rt.stats.attempt(_SUCCESS_NAME)
        plan.record(attempt, now, outcome, status, status)
        step = plan.cancel(None, now) if self.body_dropped else plan.next(now)
        if not isinstance(step, Done):
            # A retry will answer instead: drop this response with its connection.
            up, self.up = self.up, None
            if up is not None:
                up.close()
            self.last_outcome = outcome
            self.last_problem = f"instance {attempt.host} answered {status}"
            if self.span is not None:
                answered = f"answered {status}"
                self.span.attempt_failed(attempt.number, attempt.host, outcome.value, answered)
            self._take(step)
            return
        self.plan_done = True
        self.upstream_keep_alive = keep_alive
        self.status = status
        self._response_head(rt, status, headers)

    def _response_head(
        self, rt: RouteRuntime, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        parts = [status_line(status)]
        parts_add = parts.extend
        drop = rt.response_drop
        kinds = rt.response_kinds
        length: bytes | None = None
        chunked = False
        tokens = b""
        for name, value in headers:
            # What to do with a header, by its name as sent: one dict lookup per header
            # instead of lower-casing it and testing the drop set every time.
            kind = kinds.get(name)
            if kind is None:
                kind = _response_kind(name.lower(), drop)
                if len(kinds) < _KINDS_CACHED:
                    kinds[name] = kind
            if kind is _KEEP:
                parts_add((name, b": ", value, CRLF))
            elif kind is _LENGTH_HEADER:
                length = value
            elif kind is _TE_HEADER:
                chunked = value.lower().rstrip().endswith(b"chunked")
            elif kind is _CONNECTION_HEADER:
                tokens = value.lower()
        if tokens and tokens not in _CONNECTION_WORDS:  # ("keep-alive" alone: the usual)
            named = {t.strip() for t in tokens.split(b",")} - _CONNECTION_WORDS
            if named:  # headers the upstream marked hop-by-hop: drop them too
                parts = [parts[0]]
                for name, value in headers:
                    lname = name.lower()
                    if lname not in drop and lname not in named:
                        parts += (name, b": ", value, CRLF)
        self.resp_length, self.resp_chunked = length, chunked
        parts.append(rt.response_add)
        keep = self.client_keep_alive and self.request_done and not self.ctx.draining
        if self.method == b"HEAD" or status in (204, 304):
            if length is not None:
                parts += (b"content-length: ", length, CRLF)
        elif length is not None and not chunked:
            parts += (b"content-length: ", length, CRLF)
        elif self.version == "1.1":
            self.to_client_chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            keep = False  # an HTTP/1.0 client: the body ends when the connection does
        self.keep_alive = keep
        parts += (b"x-request-id: ", self.rid, CRLF)
        if not keep:
            parts.append(b"connection: close\r\n\r\n")
        elif self.version == "1.0":
            parts.append(b"connection: keep-alive\r\n\r\n")
        else:
            parts.append(CRLF)
        self.out.append(b"".join(parts))

    def response_body(self, data: bytes) -> None:
        held = self.held
        if held is not None:  # (`_release_head`, inline: every GET's body comes here)
            self.held = None
            self._accept_head(*held)
            if not self.status:  # a status the plan retries (e.g. 429): dropped, retried
                return
        self.bytes_out += len(data)
        if self.to_client_chunked:
            self.out.append(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.out.append(data)

    def response_complete(self) -> None:
        if self.held is not None:
            self._release_head()
            if not self.status:  # retried instead (see response_body)
                return
        if self.to_client_chunked:
            self.out.append(LAST_CHUNK)
        up, self.up = self.up, None
        if up is not None:
            if self.upstream_keep_alive and self.request_done:
                self.ctx.pool.release(up)
            else:
                up.close()  # the upstream wants it closed, or the request was cut short
        if not self.request_done:
            self.keep_alive = False  # the rest of the client's body will not be read
        self._finish()

    def response_flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            self.conn.write(out[0] if len(out) == 1 else b"".join(out))
            self.last_io = time.monotonic()
        if self.status and not self.finished and not self.watching:
            self._arm_watchdog()  # a body is streaming: watch for a stall

    def upstream_error(self, connection: UpstreamConnection, what: str, clean: bool) -> None:
        if connection is not self.up or self.finished:
            return
        self.up = None
        if self.held is not None:  # it died between its head and its body: a reset
            self.held = None
            self._attempt_failed(Outcome.RESET, f"{what} after the response head")
            return
        if self.status:  # the head went to the client already
            if clean and self.resp_length is None and not self.resp_chunked:
                self.response_complete()  # a close-delimited body ends like this
                return
            self.error = f"upstream {self.instance} {what} mid-response"
            self.response_flush()
            self.conn.abort()  # the client must not take a truncated body for a whole one
            self._finish()
            return
        self._attempt_failed(Outcome.RESET, what)

    def upstream_pause(self) -> None:
        self.conn.pause(_UPSTREAM_FULL)

    def upstream_resume(self) -> None:
        self.conn.resume(_UPSTREAM_FULL)

    # -- stalls ------------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        if self.rt is not None and not self.watching:
            self.watching = True
            self.ctx.timed.add(self)

    def _stalled(self) -> None:
        """Nothing moved for the route's idle_timeout."""
        rt = self.rt
        assert rt is not None
        idle = rt.route.idle_timeout
        up, self.up = self.up, None
        if up is not None:
            up.close()
        if self.status:
            self.error = f"nothing moved for {idle:g} s (idle_timeout)"
            self.conn.abort()
            self._finish()
        elif not self.request_done:
            self._abandon()
            self._fail(
                "request_timeout",
                f"the request body stalled for {idle:g} s (route {rt.route.name} idle_timeout)",
                close=True,
            )

    # -- the end -----------------------------------------------------------------------

    def _too_large(self) -> None:
        rt = self.rt
        assert rt is not None
        size = self.content_length if self.content_length is not None else self.body_size
        qualifier = "" if self.content_length is not None else "at least "
        self._abandon()
        self._fail(
            "body_too_large",
            f"route {rt.route.name} accepts request bodies up to {rt.route.max_body} bytes; "
            f"this one has {qualifier}{size}",
            close=True,
        )

    def bad_body(self, message: str) -> None:
        self._abandon()
        if self.status:
            self.error = message
            self.conn.abort()
            self._finish()
        else:
            self._fail("bad_request", message, close=True)

    def _abandon(self) -> None:
        """Stop whatever is under way upstream (the request will not be sent on)."""
        self._cancel_timer()
        self.deadline = math.inf
        connecting, self.connecting = self.connecting, None
        if connecting is not None:
            connecting.cancel()
        up, self.up = self.up, None
        if up is not None:
            up.close()
        if self.plan is not None and not self.plan_done:
            self.plan_done = True
            self.plan.cancel(self.attempt, time.monotonic())
            self.attempt = None

    def _fail(
        self,
        code: str,
        message: str,
        *,
        close: bool = False,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if self.status:  # too late for an error response: cut the connection
            self.error = message
            self.conn.abort()
            self._finish()
            return
        self.status = ERRORS[code]
        self.error = code
        # Keep the connection only if the rest of the request is known to be small
        # enough to read and discard (the parser does that as it goes on).
        small = (
            self.request_done
            or not self.expects_body
            or (
                self.expect is None
                and self.content_length is not None
                and self.content_length <= REPLAY_LIMIT
            )
        )
        self.keep_alive = self.client_keep_alive and small and not close and not self.ctx.draining
        rt = self.rt
        if rt is not None:
            rt.stats.rejected_for(code)
        else:
            UNMATCHED.rejected_for(code)
        self.out.append(
            error_response(
                code,
                message,
                keep_alive=self.keep_alive,
                head_only=self.method == b"HEAD",
                extra=(*extra, ("x-request-id", self.rid.decode())) if self.rid else extra,
            )
        )
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self._cancel_timer()
        self.ctx.timed.discard(self)
        self.response_flush()
        self._record()
        self.conn.exchange_done(self, self.keep_alive and not self.ctx.draining)

    def abort(self, reason: str) -> None:
        """The client is gone: release everything, count it as a 499."""
        if self.finished:
            return
        cancel, self.wait_cancel = self.wait_cancel, None
        if cancel is not None:
            cancel()
        self._abandon()
        self.finished = True
        self.ctx.timed.discard(self)
        if self.started:
            if not self.status:
                self.status = 499  # nginx's "client closed request"
            self.error = self.error or reason
            self._record()

    def _record(self) -> None:
        rt = self.rt
        seconds = time.monotonic() - self.t0
        if rt is not None:
            rt.stats.answered(self.status, seconds)
            span = self.span
            if span is not None:
                span.finish(
                    method=self.method,
                    route=rt.route.name,
                    path=self.path,
                    status=self.status,
                    service=rt.route.service,
                    instance=self.instance,
                    attempts=self.plan.attempts if self.plan is not None else 0,
                    request_id=self.rid,
                    seconds=seconds,
                    error=self.error,
                )
        log = self.ctx.access_log
        if log is not None:
            log.write(
                route=rt.route.name if rt is not None else "-",
                method=self.method,
                path=self.path,
                status=self.status,
                upstream=rt.route.service if rt is not None else "-",
                instance=self.instance,
                attempts=self.plan.attempts if self.plan is not None else 0,
                seconds=seconds,
                bytes_in=self.body_size,
                bytes_out=self.bytes_out,
                client=self.conn.peer.decode("latin-1"),
                request_id=self.rid.decode(),
                error=self.error,
            )

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
