"""The dashboard's gathering endpoints against a real 3-member cluster with TLS (client
certificates required) and `--acl`: they speak HTTPS with the member's certificate,
verify every member against the CA, and pass the caller's token on to every member.

The dashboard app runs in this process (as `shoal server` mounts it), the members are
real processes; every call between them crosses a real TLS socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.dashboard import dashboard_app
from shoal.dashboard.cluster import ClusterSampler, Upstream
from shoal.security.tls import MemberTls, outbound_verify
from shoal.testing import ServerProcess, wait_for

from .conftest import Pki, tls_cluster

READ = [{"cluster": True, "access": "read"}]


@pytest.fixture
def secured(tmp_path: Path, pki: Pki) -> Iterator[tuple[dict[str, ServerProcess], str, str]]:
    """The members, the management token and a `cluster:read` token known everywhere."""
    members = tls_cluster(tmp_path, pki, 3, extra=["--acl", "--client-cert-required"])
    try:
        for m in members.values():
            m.start()
        for m in members.values():
            m.wait_ready(60)
        first = members["n1"]
        boot = wait_for(
            lambda: (r := first.request("POST", "/api/v1/acl/bootstrap")).is_success and r, 30
        )
        root = {"authorization": f"Bearer {boot.json()['token']}"}
        policy = first.request("PUT", "/api/v1/acl/policies/ro", json={"rules": READ}, headers=root)
        assert policy.is_success, policy.text
        made = first.request("POST", "/api/v1/acl/tokens", json={"policies": ["ro"]}, headers=root)
        reader = made.json()["token"]
        mine = {"authorization": f"Bearer {reader}"}
        wait_for(
            lambda: all(
                m.get("/api/v1/acl/token/self", headers=mine).status_code == 200
                for m in members.values()
            ),
            30,
            what="the token on every member",
        )

        def advertised() -> bool:  # each member writes its address record after it starts
            listed = first.get("/api/v1/cluster", headers=root).json()["members"]
            return len(listed) == 3 and all(m.get("client_url") for m in listed)

        wait_for(advertised, 30, what="every member's address")
        yield members, boot.json()["token"], reader
    finally:
        for m in members.values():
            m.kill()


def _dashboard(member: ServerProcess, pki: Pki, tls: bool = True) -> httpx.AsyncClient:
    # `shoal server` hands the dashboard an http:// URL and its TLS files: it must switch.
    files = MemberTls(cert=pki.member_cert, key=pki.member_key, ca=pki.ca)
    app = dashboard_app(f"http://127.0.0.1:{member.client_port}", tls=files if tls else None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui")


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_the_cluster_view_reaches_every_member_over_tls_with_the_callers_token(
    secured: tuple[dict[str, ServerProcess], str, str], pki: Pki
) -> None:
    members, _, reader = secured

    async def scenario() -> dict[str, Any]:
        async with _dashboard(members["n2"], pki) as ui:
            view = await ui.get("/api/cluster", headers=_bearer(reader))
            assert view.status_code == 200, view.text
            refused = await ui.get("/api/cluster")  # no token: the member's own 401
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthorized"
            wrong = await ui.get("/api/cluster", headers=_bearer("nope"))
            assert wrong.json() == {"error": "unauthorized", "message": "unknown token"}
            checks = await ui.get("/api/checks", headers=_bearer(reader))
            assert checks.status_code == 200 and checks.json()["errors"] == [], checks.text
            body: dict[str, Any] = view.json()
            return body

    view = asyncio.run(scenario())
    assert view["asked"] == "n2" and view["leader"] in members
    assert {m["name"] for m in view["members"]} == set(members)
    for member in view["members"]:
        # Each member answered its own status over HTTPS with the token: role and health.
        assert member["client_url"].startswith("https://"), member
        assert member["role"] in ("leader", "follower"), member
        assert member["health"] == "healthy" and member["error"] == "", member


def test_without_its_tls_files_the_dashboard_cannot_reach_a_tls_member(
    secured: tuple[dict[str, ServerProcess], str, str], pki: Pki
) -> None:
    members, _, reader = secured

    async def scenario() -> httpx.Response:
        async with _dashboard(members["n1"], pki, tls=False) as ui:
            return await ui.get("/api/cluster", headers=_bearer(reader))

    answer = asyncio.run(scenario())
    assert answer.status_code == 503 and answer.json()["error"] == "unavailable"


def test_the_sampler_follows_with_the_token_it_was_made_for(
    secured: tuple[dict[str, ServerProcess], str, str], pki: Pki
) -> None:
    members, _, reader = secured
    tls = MemberTls(cert=pki.member_cert, key=pki.member_key, ca=pki.ca)
    upstream = Upstream(members["n3"].url, outbound_verify(tls))

    async def first_frame(token: str | None) -> tuple[str, Any]:
        sampler = ClusterSampler(upstream.as_caller(token), interval=0.2)
        try:
            with sampler.follow() as queue:
                while True:
                    frame = (await asyncio.wait_for(queue.get(), 30)).decode()
                    kind = frame.split("\n")[0].removeprefix("event: ")
                    if kind in ("view", "unreachable"):
                        data = frame.split("\n")[1].removeprefix("data: ")
                        return kind, json.loads(data)
        finally:
            await sampler.aclose()

    kind, view = asyncio.run(first_frame(reader))
    assert kind == "view" and all(m["role"] for m in view["members"]), view
    kind, problem = asyncio.run(first_frame(None))
    assert kind == "unreachable" and "401 unauthorized" in problem["error"], problem
