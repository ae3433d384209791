"""The dashboard's ASGI app: the pages, their static files, and two gathering endpoints.

Routes (under the mount point, `/ui` on a member):

- `/static/...`: the CSS and the ES modules, from the package (no CDN, no build step).
- `/api/cluster`, `/api/cluster/stream`: every member's view (`cluster.py`), once, or as
  Server-Sent Events (`view` when anything changed, `cluster` per event, `events` with the
  recent ones on connect).
- `/api/checks?service=S`: the active health checks of every member (each member runs
  the checks it owns; `/api/v1/health/checks` answers for the member asked only), with
  the member that runs each.
- anything else: `index.html`; the page's script reads the path (`/ui/services/users`)
  and renders that page, so every page has a URL to bookmark and reload.

Rules: read-only (every write the pages make goes to the member's `/api/v1`, with its
validation and its errors); errors have the API's shape, `{"error", "message"}`.

Under ACLs the member's guard has already checked `cluster:read` for `/ui/api/...`, and
every call made here carries the caller's own `Authorization` on (a member's refusal
comes back with its own status and body, so the page can ask for a token or name the
missing permission). Under TLS (`tls=`) the calls speak HTTPS, verify the members
against the cluster's CA and present the member's certificate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..security.guard import bearer_token
from ..security.tls import MemberTls, outbound_verify
from .cluster import MEMBER_TIMEOUT, ClusterSampler, Upstream, refusal, sample_cluster

__all__ = ["STATIC", "dashboard_app"]

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_SECONDS = 15.0
# The pages change with the package: revalidate every load (ETag), never serve stale.
_NO_CACHE = {"cache-control": "no-cache"}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _https(url: str) -> str:
    """The member's own URL under TLS (the caller may have built an http:// one)."""
    return "https://" + url.removeprefix("http://") if url.startswith("http://") else url


def _passed_on(error: httpx.HTTPStatusError) -> Response | None:
    """A member's 401/403 answered to the page as it came, so the page can react to it."""
    if error.response.status_code not in (401, 403):
        return None
    try:
        body = error.response.json()
    except ValueError:
        return None
    return JSONResponse(body, status_code=error.response.status_code)


class _Dashboard:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        # One sampler per token of the pages following (None: no ACLs, or no token).
        self.samplers: dict[str | None, ClusterSampler] = {}

    def caller(self, request: Request) -> Upstream:
        return self.upstream.as_caller(bearer_token(request.scope))

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_NO_CACHE)

    async def cluster(self, request: Request) -> Response:
        upstream = self.caller(request)
        async with upstream.client() as http:
            try:
                view = await sample_cluster(http, upstream.member_url)
            except httpx.HTTPStatusError as error:
                return _passed_on(error) or _error(503, "unavailable", str(error))
            except (httpx.HTTPError, ValueError) as error:
                return _error(503, "unavailable", f"the member does not answer: {error}")
        return JSONResponse(view.to_json())

    async def cluster_stream(self, request: Request) -> Response:
        upstream = self.caller(request)
        sampler = self.samplers.get(upstream.token)
        if sampler is None:
            sampler = self.samplers[upstream.token] = ClusterSampler(upstream)

        async def frames() -> AsyncIterator[bytes]:
            try:
                with sampler.follow() as queue:
                    while True:
                        try:
                            yield await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                        except TimeoutError:
                            yield b": keep-alive\n\n"
            finally:
                if not sampler.followed and self.samplers.get(upstream.token) is sampler:
                    del self.samplers[upstream.token]  # the last page with this token left

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)

    async def checks(self, request: Request) -> Response:
        service = request.query_params.get("service")
        unknown = sorted(set(request.query_params) - {"service"})
        if unknown:
            return _error(400, "invalid_request", f"unknown query parameter {unknown[0]!r}")
        upstream = self.caller(request)
        async with upstream.client() as http:
            try:
                status = await http.get(f"{upstream.member_url}/api/v1/cluster", timeout=2.0)
                if status.is_error:
                    raise httpx.HTTPStatusError(
                        refusal(status), request=status.request, response=status
                    )
                members = status.json().get("members") or []
            except httpx.HTTPStatusError as error:
                return _passed_on(error) or _error(503, "unavailable", str(error))
            except (httpx.HTTPError, ValueError) as error:
                return _error(503, "unavailable", f"the member does not answer: {error}")
            answers = await asyncio.gather(*(self._checks_of(http, m) for m in members))
        checks: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        for name, found, problem in answers:
            if problem:
                errors.append({"member": name, "message": problem})
            for check in found:
                if service is None or check.get("service") == service:
                    checks.append({**check, "member": name})
        checks.sort(key=lambda c: (str(c.get("service")), str(c.get("id"))))
        return JSONResponse({"checks": checks, "errors": errors})

    async def _checks_of(
        self, http: httpx.AsyncClient, member: dict[str, Any]
    ) -> tuple[str, list[dict[str, Any]], str]:
        name, url = str(member.get("name")), member.get("client_url")
        if not url:
            return name, [], "has not advertised its address yet"
        try:
            response = await http.get(f"{url}/api/v1/health/checks", timeout=MEMBER_TIMEOUT)
            if response.is_error:
                return name, [], refusal(response)
            return name, list(response.json().get("checks") or []), ""
        except (httpx.HTTPError, ValueError) as error:
            return name, [], f"{type(error).__name__}: {error}"

    async def api_not_found(self, request: Request) -> Response:
        return _error(404, "not_found", f"no dashboard endpoint {request.url.path}")


def dashboard_app(member_url: str, *, tls: MemberTls | None = None) -> ASGIApp:
    """The dashboard, talking to the member whose API is at `member_url`; with `tls` (the
    member's own TLS files) over HTTPS, verified against its CA."""
    url = member_url.rstrip("/")
    upstream = Upstream(_https(url) if tls is not None else url, outbound_verify(tls))
    ui = _Dashboard(upstream)
    return Starlette(
        routes=[
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
            Route("/api/cluster", ui.cluster),
            Route("/api/cluster/stream", ui.cluster_stream),
            Route("/api/checks", ui.checks),
            Route("/api/{rest:path}", ui.api_not_found),
            Route("/{page:path}", ui.index),
        ]
    )
