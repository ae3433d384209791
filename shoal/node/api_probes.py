"""The member's probes: `/healthz` (the process answers), `/readyz` (it knows a leader)
and `/metrics` (Prometheus text). Each member answers for itself; nothing is forwarded."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from .api_errors import ApiError
from .member import Member


def router(member: Member) -> APIRouter:
    api = APIRouter()

    @api.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok", "member": member.name}

    @api.get("/readyz")
    async def readyz() -> Any:
        if member.leader is None:
            raise ApiError(503, "no_leader", "this member knows no leader")
        return {"status": "ready", "leader": member.leader}

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(member.metrics.render(), media_type="text/plain; version=0.0.4")

    return api
