"""A member's lifespan: what runs beside the Raft loop, started and stopped in one place.

Theory of operation (Starlette's lifespan is the model). `running_member(config)` is an
async context manager: entering it starts the `Member` (its WAL, peer transport and
Raft loop), then builds what the HTTP API needs beside it -- the link to the leader that
all forwarding uses, the decoded-registry cache, and the active health checker, started;
leaving it stops them in the reverse order, the member last. What it yields,
`RunningMember`, is passed explicitly to whoever needs a part (`app.build_app`, the ASGI
front, tests), so nothing is found through module-level registries and no router starts
a task. `shoal server` (server.py) runs the HTTP server inside it; the in-process tests
(tests/node/test_front.py) run an ASGI client inside it.

Rules: every task started here is stopped here, whatever failed; a part is built only
after the parts it uses are running.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .health import HealthChecker
from .member import Member, MemberConfig
from .registry_cache import RegistryCache
from .routing import LeaderLink


@dataclass(frozen=True, slots=True)
class RunningMember:
    """A started member and the parts its HTTP API shares."""

    member: Member
    link: LeaderLink  # the one forwarding path to the leader
    cache: RegistryCache  # decoded registry records and rendered discovery answers
    checker: HealthChecker  # the active health checks this member runs


@contextlib.asynccontextmanager
async def running_member(config: MemberConfig) -> AsyncIterator[RunningMember]:
    """Start a member and its parts; stop them all on exit (the member last)."""
    member = Member(config)
    await member.start()
    try:
        link = LeaderLink(member)
        try:
            checker = HealthChecker(member, link)
            checker.start()
            try:
                yield RunningMember(member, link, RegistryCache(), checker)
            finally:
                await checker.stop()
        finally:
            await link.aclose()
    finally:
        await member.stop()


__all__ = ["RunningMember", "running_member"]
