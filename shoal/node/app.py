"""The whole HTTP application of a member: the KV/cluster API plus the feature routers.

`mounts` are extra ASGI apps served under a path prefix (the web dashboard at `/ui`):
they are injected by the caller (`shoal server` passes the dashboard), because the node
layer may not import the layers above it. A mounted app sees the same ApiFront (body
limits, metrics) as the API, and reaches the member only through the HTTP API.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from starlette.types import ASGIApp

from .api import create_app
from .api_config import router as config_router
from .api_health import router as health_router
from .api_registry import router as registry_router
from .api_schema import install as install_schema
from .member import Member


def build_app(member: Member, mounts: Mapping[str, ASGIApp] | None = None) -> FastAPI:
    app = create_app(member)
    routing = app.state.routing
    app.include_router(registry_router(member, routing))
    app.include_router(config_router(member, routing))
    app.include_router(health_router(member))
    install_schema(app)
    for path, mounted in (mounts or {}).items():
        app.mount(path, mounted)
    return app
