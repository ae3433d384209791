"""The dashboard's HTTP surface on a real member: pages, static files, its endpoints."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from shoal.dashboard.app import STATIC
from shoal.testing import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess("n1", tmp_path_factory.mktemp("ui") / "n1" / "data").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


@pytest.mark.parametrize("path", ["/ui/", "/ui/services/users", "/ui/config/a/b", "/ui/jobs"])
def test_every_page_path_serves_the_one_page(server: ServerProcess, path: str) -> None:
    response = server.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/static/js/main.js">' in response.text


def test_ui_without_a_slash_redirects(server: ServerProcess) -> None:
    response = server.get("/ui", follow_redirects=False)
    assert response.status_code in (307, 308) and response.headers["location"].endswith("/ui/")


def test_the_modules_are_served_as_javascript(server: ServerProcess) -> None:
    for path in sorted((STATIC / "js").glob("*.js")):
        response = server.get(f"/ui/static/js/{path.name}")
        assert response.status_code == 200, path.name
        assert "javascript" in response.headers["content-type"]
    assert server.get("/ui/static/js/nope.js").status_code == 404


def test_nothing_is_loaded_from_outside_the_member() -> None:
    """Works without internet: no CDN, no absolute URL in any page file."""
    for path in STATIC.rglob("*"):
        if path.is_file():
            assert not re.search(r"https?://", path.read_text()), path


def test_the_cluster_endpoint_gathers_every_member(server: ServerProcess) -> None:
    view = server.get("/ui/api/cluster").json()
    assert view["asked"] == "n1" and view["leader"] == "n1"
    (member,) = view["members"]
    assert member["health"] == "healthy" and member["role"] == "leader"
    assert member["commit_index"] >= 1


def test_the_endpoints_answer_errors_in_the_apis_shape(server: ServerProcess) -> None:
    bad = server.get("/ui/api/checks?servce=x")
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_request", "message": "unknown query parameter 'servce'"}
    missing = server.get("/ui/api/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert server.get("/ui/api/checks?service=x").json() == {"checks": [], "errors": []}


def test_the_cluster_stream_sends_the_view_then_closes_cleanly(server: ServerProcess) -> None:
    with httpx.stream("GET", f"{server.url}/ui/api/cluster/stream", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        seen = ""
        for chunk in stream.iter_text():
            seen += chunk
            if "event: view" in seen:
                break
    assert "event: events" in seen and '"asked":"n1"' in seen
