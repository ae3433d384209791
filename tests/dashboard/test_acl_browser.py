"""The dashboard in headless Chromium against a real 3-member cluster with `--acl`.

What a person would see: the page asks for a token (an unknown one is refused in the
form), a read-only token sees the overview -- every member's role, which the dashboard
gathers from every member with that same token -- and a weight change is refused with the
permission it lacks named, writing nothing; a token without registry rights gets the
permission named on the overview; the token lives in sessionStorage only.

Screenshots go to the test's directory; with SHOAL_UPDATE_SCREENSHOTS=1 they also
replace docs/screenshots/acl-*.png, which docs/dashboard.md shows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.testing import LocalCluster, wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LIVE = 30_000  # ms; generous: the machine is shared
READ_ONLY = [{"key": "", "access": "read"}, {"cluster": True, "access": "read"}]
CLUSTER_ONLY = [{"cluster": True, "access": "read"}]


@dataclass
class AclWorld:
    cluster: LocalCluster
    url: str
    root: str  # the bootstrap (management) token
    shots: Path

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token or self.root}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def token(self, name: str, rules: list[dict[str, Any]]) -> str:
        assert self.api("PUT", f"/api/v1/acl/policies/{name}", json={"rules": rules}).is_success
        answer = self.api("POST", "/api/v1/acl/tokens", json={"policies": [name]})
        assert answer.is_success, answer.text
        secret: str = answer.json()["token"]
        return secret


def _known_everywhere(world: AclWorld, secret: str) -> bool:
    """A new token is read from each member's own copy: wait until all have it."""
    return all(
        httpx.get(
            m.url + "/api/v1/acl/token/self",
            headers={"authorization": f"Bearer {secret}"},
            timeout=2,
        ).status_code
        == 200
        for m in world.cluster.members.values()
    )


@pytest.fixture(scope="module")
def acl_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclWorld]:
    cluster = LocalCluster(tmp_path_factory.mktemp("acl-cluster"), 3, extra=["--acl"])
    try:
        cluster.start()
        for member in cluster.members.values():
            member.wait_ready(60)  # /readyz is public: a leader is known
        first = next(iter(cluster.members.values()))
        answer = wait_for(
            lambda: (
                (r := httpx.post(first.url + "/api/v1/acl/bootstrap", timeout=5)).is_success and r
            ),
            30,
            what="bootstrap",
        )
        world = AclWorld(cluster, first.url, answer.json()["token"], tmp_path_factory.mktemp("s"))
        body = {"address": "127.0.0.1", "port": 9, "weight": 2.0, "zone": "eu-1"}
        assert world.api("PUT", "/api/v1/services/web/instances/w1", json=body).is_success
        yield world
    finally:
        cluster.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page raised: {errors}"


def shoot(page: Any, world: AclWorld, name: str) -> None:
    path = world.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("SHOAL_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)


def sign_in(page: Any, world: AclWorld, secret: str, path: str = "") -> None:
    page.goto(f"{world.url}/ui/{path}")
    page.wait_for_selector("#token-form", timeout=LIVE)
    page.fill("#token-form input[name=token]", secret)
    with page.expect_navigation():  # a good token reloads the page with it
        page.click("#token-form button[type=submit]")


def test_the_token_form_appears_and_refuses_an_unknown_token(
    page: Any, acl_world: AclWorld
) -> None:
    page.goto(f"{acl_world.url}/ui/")
    form = page.locator("#token-form")
    form.wait_for(timeout=LIVE)
    assert "needs an ACL token" in (form.text_content() or "")
    shoot(page, acl_world, "acl-token-form")
    page.fill("#token-form input[name=token]", "not-a-token")
    page.click("#token-form button[type=submit]")
    wait_for(lambda: "unknown token" in page.locator("#token-error").inner_text(), 10)
    assert page.evaluate("sessionStorage.length") == 0


def test_a_read_only_token_sees_the_overview_and_cannot_change_a_weight(
    page: Any, acl_world: AclWorld
) -> None:
    secret = acl_world.token("readonly", READ_ONLY)
    wait_for(lambda: _known_everywhere(acl_world, secret), 30, what="the token on every member")
    sign_in(page, acl_world, secret)
    page.wait_for_selector('#live[data-state="live"]', timeout=LIVE)
    assert page.locator("#token-form").count() == 0
    # Every member answered the dashboard's gathering with the caller's token: each row
    # has its role (a member refusing the token would leave it empty).
    wait_for(lambda: page.locator("table.members tr[data-role]").count() == 3, 30)
    wait_for(lambda: page.locator('table.members tr[data-role=""]').count() == 0, 30)
    assert page.locator("table.members tr[data-role=leader]").count() == 1
    page.wait_for_selector('table.services tr[data-service="web"]')
    assert "readonly" in page.locator("#identity").inner_text()
    # Kept for this tab only, never in localStorage.
    assert page.evaluate("sessionStorage.getItem('shoal.acl.token')") == secret
    assert page.evaluate("localStorage.length") == 0
    shoot(page, acl_world, "acl-overview")

    page.goto(f"{acl_world.url}/ui/services/web")  # same tab: still signed in
    row = page.locator('table.instances tr[data-instance="w1"]')
    row.wait_for(timeout=LIVE)
    row.locator("input.weight").fill("5")
    row.locator("button.save-weight").click()
    page.wait_for_selector("#message.error")
    message = page.locator("#message").inner_text()
    assert "permission denied" in message and "key:write:/registry/services/web/" in message
    shoot(page, acl_world, "acl-denied")
    [instance] = acl_world.api("GET", "/api/v1/services/web/instances").json()["instances"]
    assert instance["weight"] == 2.0  # nothing written


def test_a_token_without_registry_rights_is_told_which_permission_it_lacks(
    page: Any, acl_world: AclWorld
) -> None:
    secret = acl_world.token("cluster-only", CLUSTER_ONLY)
    wait_for(lambda: _known_everywhere(acl_world, secret), 30, what="the token on every member")
    sign_in(page, acl_world, secret)
    page.wait_for_selector("table.members tr[data-member]", timeout=LIVE)  # cluster: granted
    problem = page.locator("#page .error").first
    problem.wait_for(timeout=LIVE)
    assert "key:read:/registry/services/*" in problem.inner_text()


def test_a_deleted_token_asks_again(page: Any, acl_world: AclWorld) -> None:
    name = "short-lived"
    secret = acl_world.token(name, READ_ONLY)
    wait_for(lambda: _known_everywhere(acl_world, secret), 30, what="the token on every member")
    sign_in(page, acl_world, secret)
    page.wait_for_selector('#live[data-state="live"]', timeout=LIVE)
    tokens = acl_world.api("GET", "/api/v1/acl/tokens").json()["tokens"]
    [accessor] = [t["accessor"] for t in tokens if t["policies"] == [name]]
    assert acl_world.api("DELETE", f"/api/v1/acl/tokens/{accessor}").is_success
    wait_for(lambda: not _any_knows(acl_world, secret), 30, what="the token gone everywhere")
    page.reload()
    page.wait_for_selector("#token-form", timeout=LIVE)
    assert "no longer accepted" in page.locator("#token-error").inner_text()


def _any_knows(world: AclWorld, secret: str) -> bool:
    return any(
        httpx.get(
            m.url + "/api/v1/acl/token/self",
            headers={"authorization": f"Bearer {secret}"},
            timeout=2,
        ).status_code
        == 200
        for m in world.cluster.members.values()
    )
