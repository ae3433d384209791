"""The whole HTTP application of a member: the KV/cluster API plus the feature routers."""

from __future__ import annotations

from fastapi import FastAPI

from .api import create_app
from .api_config import router as config_router
from .api_health import router as health_router
from .api_registry import router as registry_router
from .api_schema import install as install_schema
from .member import Member


def build_app(member: Member) -> FastAPI:
    app = create_app(member)
    routing = app.state.routing
    app.include_router(registry_router(member, routing))
    app.include_router(config_router(member, routing))
    app.include_router(health_router(member))
    install_schema(app)
    return app
