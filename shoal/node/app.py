"""The whole HTTP application of a member: FastAPI with every router of `/api/v1`.

`build_app(running)` wires the routers to the parts of a running member (lifespan.py):
KV, leases, cluster and probes, the registry (sharing the member's registry cache with
the fast path), the config center, and the health-check view. It starts nothing: the
parts' lifetimes belong to the lifespan. `mounts` adds other ASGI apps under a path (the
web dashboard at `/ui`, injected by the CLI, since this layer may not import it). The
ASGI front (front.py) wraps the result, so a mounted app meets the same body limits
and metrics as the API; it reaches the member only through the HTTP API.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version

from fastapi import FastAPI
from starlette.types import ASGIApp

from . import api_cluster, api_config, api_health, api_kv, api_leases, api_probes, api_registry
from .api_errors import install_error_handlers
from .api_schema import install as install_schema
from .lifespan import RunningMember
from .routing import Routing


def build_app(running: RunningMember, *, mounts: Mapping[str, ASGIApp] | None = None) -> FastAPI:
    member = running.member
    app = FastAPI(
        title="shoal control plane",
        version=version("shoal"),
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    routing = Routing(member, running.link)
    for router in (
        api_kv.router(member, routing),
        api_leases.router(member, routing),
        api_cluster.router(member, routing),
        api_probes.router(member),
        api_registry.router(member, routing, running.cache),
        api_config.router(member, routing),
        api_health.router(member, running.checker),
    ):
        app.include_router(router)
    install_schema(app)
    for path, mounted in (mounts or {}).items():
        app.mount(path, mounted)
    return app


__all__ = ["build_app"]
