"""`GET /api/v1/health/checks`: the active health checks this member runs, for operators.

Each member answers for itself (no forwarding): which instances' HTTP/TCP checks it owns
under the roster it last read, with the rise/fall counters and the last probe result.
Asking every member shows the whole assignment; an instance shows up at exactly one
member once the roster has settled. Read-only; nothing here changes a check.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .health import HealthChecker
from .member import Member


def router(member: Member, checker: HealthChecker) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/api/v1/health/checks")
    async def checks() -> Any:
        owned = checker.tracked()
        roster = checker.roster
        return {
            "member": member.name,
            "leader": member.leader,
            "checkers": list(roster) if roster is not None else None,
            "count": len(owned),
            "checks": owned,
        }

    return api
