"""Calling another service by name: `ServiceClient` (blocking) and `AsyncServiceClient`.

    users = svc.client("users")                  # from a shoal.Service
    r = users.get("/users/7")                    # Flask: blocking
    r = await users.get("/users/7")              # FastAPI: awaited

    with ServiceClient("users", endpoints="http://127.0.0.1:7700") as users: ...  # a script

Both are the same loop over one `CallCore` (the attempt plan of `shoal.resilience.call`
over the service's `Upstream`); a shell only sends HTTP (httpx), sleeps and reads the
clock. Per request: no control-plane call -- instances come from the watched local view
--, a balanced pick, per-attempt and overall timeouts, retries of idempotent requests
(RFC 9110's GET, HEAD, OPTIONS, PUT, DELETE; others only when nothing was sent, or with
`idempotent=True`) within the retry budget and after a full-jitter backoff, circuit
breakers and outlier ejection per instance, and the caller's trace context and request id
passed on. The answer is an `httpx.Response` whatever its status; `CallError`s say why
there is none.

`transport=` puts another httpx transport under the calls (default: httpx's own
connection pool). On the 2-core development machine httpx's pool costs 0.6-1.3 ms of
CPU per call, growing with the connections it holds, where aiohttp's, through
`httpx_aiohttp.AiohttpTransport`, costs 0.25-0.35 ms (bench/sdk_overhead.py,
docs/sdk-benchmarks.md). Whatever the transport, a connect-type error counts as "nothing
was sent" (and so may be retried for any method) only when its cause shows that no
connection was made; other transports' mappings are not trusted to keep that apart from
a connection lost mid-request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx

from ..observe import outgoing_headers
from ..resilience import Outcome, Timeouts, classify_status
from ..resilience.call import Attempt, Backoff, CallPlan, Done, StopReason
from . import metrics
from .agent import Agent
from .errors import CallError, CallFailed, CallTimeout, NoInstance
from .policy import ClientPolicy
from .upstream import Upstream

__all__ = ["AsyncServiceClient", "CallCore", "ServiceClient"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
DISCOVERY_WAIT = 5.0  # how long a first call waits for the first view of the service
# Keep-alive connections per instance; enough for a busy caller, bounded for a crowd.
_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)


# The errnos of a connection that was never made: the request cannot have been sent.
# (Not ETIMEDOUT: an established connection can time out too, after the request went.)
_NOT_CONNECTED = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EADDRNOTAVAIL,
        errno.EHOSTDOWN,
    }
)


def _never_connected(error: httpx.HTTPError) -> bool:
    """Does the cause of a connect-type `error` show that no connection was made?

    httpx's own transport raises these only before a request is written (its cause is
    an httpcore exception). Another transport may map more onto them: httpx_aiohttp
    turns a server closing the connection mid-request into `ConnectTimeout`. Only a
    timeout while connecting or a socket error that means "not connected" is trusted
    there; anything else may have reached the server, and is a reset."""
    cause = error.__cause__
    if cause is None or type(cause).__module__.split(".")[0] == "httpcore":
        return True
    if isinstance(cause, TimeoutError) and cause.errno is None:
        return True  # a timer ran out while connecting (a socket's ETIMEDOUT has an errno)
    return isinstance(cause, OSError) and cause.errno in _NOT_CONNECTED


def _outcome_of(error: httpx.HTTPError) -> Outcome:
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Outcome.CONNECT_FAILURE if _never_connected(error) else Outcome.RESET
    if isinstance(error, httpx.TimeoutException):
        return Outcome.TIMEOUT
    return Outcome.RESET


class CallCore:
    """What both shells share: the upstream, policies, plans, and what a plan's end means."""

    def __init__(
        self,
        service: str,
        *,
        agent: Agent | None = None,
        endpoints: str | None = None,
        policy: ClientPolicy | None = None,
        policy_item: str | None = None,
        local_zone: str = "",
        rng: random.Random | None = None,
    ) -> None:
        # A client of its own (a script, a test) gets an agent of its own, stopped on close.
        self._own_agent = agent is None
        if agent is None:
            agent = Agent(endpoints or os.environ.get("SHOAL_ENDPOINTS", "http://127.0.0.1:7700"))
        self.service, self.agent = service, agent
        self.rng = rng or random.Random()
        self.upstream = Upstream(
            service,
            agent.view(service),
            policy or ClientPolicy(),
            local_zone=local_zone,
            rng=self.rng,
        )
        if policy_item is not None:
            agent.follow_config(policy_item, {"service": service}, self._policy_changed)

    def _policy_changed(self, update: Any) -> None:
        import logging

        if update.deleted:
            return
        try:
            self.upstream.set_policy(ClientPolicy.from_mapping(update.value or {}))
        except ValueError as error:  # a bad policy must not stop the calls: keep the last
            logging.getLogger("shoal.service").error(
                "client policy for %s (version %s) refused: %s", self.service, update.version, error
            )

    def plan(
        self,
        method: str,
        idempotent: bool | None,
        hash_key: str | bytes | None,
        timeout: float | None,
    ) -> CallPlan[httpx.Response]:
        call_policy = self.upstream.call_policy
        if timeout is not None:
            per = call_policy.timeouts.per_attempt
            call_policy = replace(
                call_policy,
                timeouts=Timeouts(overall=timeout, per_attempt=min(per, timeout) if per else None),
            )
        safe = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        return CallPlan(call_policy, self.upstream, safe, time.monotonic(), self.rng, hash_key)

    def url(self, attempt: Attempt, path: str) -> str:
        endpoint = self.upstream.endpoint(attempt.host)
        base = endpoint.base_url if endpoint is not None else "http://invalid"
        return base + (path if path.startswith("/") else "/" + path)

    @staticmethod
    def headers(extra: Mapping[str, str] | None) -> dict[str, str]:
        out = outgoing_headers()
        if extra:
            out.update(extra)
        return out

    def attempt_timeout(self, attempt: Attempt) -> httpx.Timeout:
        seconds = attempt.timeout if attempt.timeout != float("inf") else None
        return httpx.Timeout(seconds)

    def answered(
        self, plan: CallPlan[httpx.Response], attempt: Attempt, response: httpx.Response
    ) -> None:
        outcome = classify_status(response.status_code)
        metrics.CALL_ATTEMPTS.labels(self.service, outcome.name.lower()).inc()
        plan.record(attempt, time.monotonic(), outcome, response.status_code, response)

    def failed(
        self, plan: CallPlan[httpx.Response], attempt: Attempt, error: httpx.HTTPError
    ) -> None:
        outcome = _outcome_of(error)
        metrics.CALL_ATTEMPTS.labels(self.service, outcome.name.lower()).inc()
        plan.record(attempt, time.monotonic(), outcome)

    def backing_off(self) -> None:
        metrics.RETRIES.labels(self.service, "started").inc()

    def result(
        self, done: Done[httpx.Response], started: float, error: BaseException | None
    ) -> httpx.Response:
        metrics.CALL_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        if done.response is not None:
            kind = "success" if done.response.status_code < 500 else "error_status"
            metrics.CALLS.labels(self.service, kind).inc()
            return done.response
        reason = done.reason or StopReason.ATTEMPTS_EXHAUSTED
        metrics.CALLS.labels(self.service, reason).inc()
        if reason == StopReason.BUDGET_EXHAUSTED:
            metrics.RETRIES.labels(self.service, "budget_exhausted").inc()
        raise self._error(done, reason) from error

    def _error(self, done: Done[httpx.Response], reason: str) -> CallError:
        outcome = done.outcome.name.lower() if done.outcome else None
        kind: type[CallError]
        if reason == StopReason.NO_HOST:
            kind = NoInstance
            if self.upstream.view.snapshot is None:
                why = "no view of it yet (is the control plane reachable?)"
            elif not self.upstream.describe():
                why = "no healthy instance"
            else:
                why = "every instance refused the call (circuit open)"
            message = f"cannot call {self.service}: {why}"
        elif reason == StopReason.DEADLINE_EXCEEDED:
            kind = CallTimeout
            message = f"call to {self.service} timed out after {done.attempts} attempt(s)"
        else:
            kind = CallFailed
            detail = f"last attempt: {outcome}" if outcome else "no attempt was made"
            if reason == StopReason.BUDGET_EXHAUSTED:
                detail += "; the retry budget is spent (too many retries in flight)"
            message = f"call to {self.service} failed after {done.attempts} attempt(s) ({detail})"
        return kind(
            message, service=self.service, reason=reason, attempts=done.attempts, outcome=outcome
        )

    @property
    def has_view(self) -> bool:
        return self.upstream.view.snapshot is not None

    def close(self) -> None:
        self.upstream.close()
        if self._own_agent:
            self.agent.stop()


class ServiceClient:
    """Blocking calls to `service` (thread-safe: share one per process). `transport`:
    the httpx transport to send with (default: httpx's own pool, `_LIMITS`)."""

    def __init__(
        self,
        service: str,
        *,
        core: CallCore | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        self._core = core or CallCore(service, **options)
        self.service = service
        self._http = httpx.Client(limits=_LIMITS, timeout=None, transport=transport)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
        hash_key: str | bytes | None = None,
    ) -> httpx.Response:
        core = self._core
        if not core.has_view:
            with contextlib.suppress(TimeoutError):  # if it never comes: NoInstance, below
                core.upstream.view.wait(DISCOVERY_WAIT)
        plan = core.plan(method, idempotent, hash_key, timeout)
        sent = core.headers(headers)
        started, error = time.perf_counter(), None
        attempt: Attempt | None = None
        try:
            while True:
                step = plan.next(time.monotonic())
                if isinstance(step, Done):
                    return core.result(step, started, error)
                if isinstance(step, Backoff):
                    core.backing_off()
                    time.sleep(step.delay)
                    continue
                attempt = step
                try:
                    response = self._http.request(
                        method,
                        core.url(step, path),
                        params=params,
                        json=json,
                        content=content,
                        headers=sent,
                        timeout=core.attempt_timeout(step),
                    )
                except httpx.HTTPError as failure:
                    error = failure
                    core.failed(plan, step, failure)
                else:
                    core.answered(plan, step, response)
                attempt = None
        except BaseException:
            if attempt is not None:
                plan.cancel(attempt, time.monotonic())
            raise

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def instances(self) -> list[dict[str, object]]:
        """The pool as this client sees it (id, url, load, breaker, ejection)."""
        return self._core.upstream.describe()

    def close(self) -> None:
        self._http.close()
        self._core.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServiceClient:
    """`ServiceClient` for asyncio code: the same calls, awaited. Use it from one event loop.
    `transport`: the httpx transport to send with (default: httpx's own pool), e.g.
    `httpx_aiohttp.AiohttpTransport(limits=...)`; see the module docstring."""

    def __init__(
        self,
        service: str,
        *,
        core: CallCore | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        self._core = core or CallCore(service, **options)
        self.service = service
        self._http = httpx.AsyncClient(limits=_LIMITS, timeout=None, transport=transport)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
        hash_key: str | bytes | None = None,
    ) -> httpx.Response:
        core = self._core
        if not core.has_view:
            with contextlib.suppress(TimeoutError):
                await asyncio.to_thread(core.upstream.view.wait, DISCOVERY_WAIT)
        plan = core.plan(method, idempotent, hash_key, timeout)
        sent = core.headers(headers)
        started, error = time.perf_counter(), None
        attempt: Attempt | None = None
        try:
            while True:
                step = plan.next(time.monotonic())
                if isinstance(step, Done):
                    return core.result(step, started, error)
                if isinstance(step, Backoff):
                    core.backing_off()
                    await asyncio.sleep(step.delay)
                    continue
                attempt = step
                try:
                    response = await self._http.request(
                        method,
                        core.url(step, path),
                        params=params,
                        json=json,
                        content=content,
                        headers=sent,
                        timeout=core.attempt_timeout(step),
                    )
                except httpx.HTTPError as failure:
                    error = failure
                    core.failed(plan, step, failure)
                else:
                    core.answered(plan, step, response)
                attempt = None
        except BaseException:
            if attempt is not None:
                plan.cancel(attempt, time.monotonic())
            raise

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    def instances(self) -> list[dict[str, object]]:
        return self._core.upstream.describe()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._core.close()

    async def __aenter__(self) -> AsyncServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
