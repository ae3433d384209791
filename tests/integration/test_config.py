"""The config center on a real one-member `shoal server`: publish and watch, validation
errors with line and column, rollback, gray release by labels, racing publishes."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.testing import ServerProcess, wait_for

BASE = "/api/v1/config"


def publish(s: ServerProcess, item: str, content: str, fmt: str = "yaml", **body: Any) -> int:
    r = s.request("PUT", f"{BASE}/{item}", json={"content": content, "format": fmt, **body})
    assert r.status_code == 200, r.text
    number: int = r.json()["version"]
    return number


class Subscriber:
    """A thread reading one config watch stream, collecting its `config` events."""

    def __init__(self, s: ServerProcess, item: str, labels: dict[str, str] | None = None):
        self.params = {f"labels.{k}": v for k, v in (labels or {}).items()}
        self.url = f"{s.url}{BASE}/{item}/watch"
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.stop = threading.Event()  # checked per line (keep-alives come every 15 s)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.connected.wait(10), "the watch did not connect"

    def _run(self) -> None:
        try:
            with httpx.stream("GET", self.url, params=self.params, timeout=30) as r:
                assert r.status_code == 200, r.read()
                kind = None
                for line in r.iter_lines():
                    self.connected.set()
                    if self.stop.is_set():
                        return
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "config":
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass  # the server was killed at the end of the test

    def contents(self) -> list[str]:
        return [e["content"] for e in self.events]

    def wait_content(self, content: str) -> dict[str, Any]:
        return wait_for(
            lambda: next((e for e in reversed(self.events) if e["content"] == content), None),
            what=f"content {content!r} at a subscriber",
        )


def test_publish_reaches_a_watching_subscriber(server: ServerProcess) -> None:
    first = publish(server, "prod/articles", "limit: 10\n", author="ann", message="first")
    assert first == 1
    sub = Subscriber(server, "prod/articles")
    assert sub.wait_content("limit: 10\n")["version"] == 1  # the current one, at once
    second = publish(server, "prod/articles", "limit: 20\n")
    event = sub.wait_content("limit: 20\n")
    assert event["version"] == second == 2 and event["beta"] is False
    got = server.get(f"{BASE}/prod/articles").json()
    assert got["content"] == "limit: 20\n" and got["format"] == "yaml" and got["version"] == 2
    listed = server.get(BASE, params={"namespace": "prod"}).json()["items"]
    assert [(i["name"], i["version"]) for i in listed] == [("articles", 2)]
    sub.stop.set()


def test_invalid_yaml_is_rejected_with_line_and_column(server: ServerProcess) -> None:
    r = server.request(
        "PUT", f"{BASE}/prod/bad", json={"content": "a: 1\nb: [1, 2\nc: 3\n", "format": "yaml"}
    )
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "invalid_content" and (body["line"], body["column"]) == (3, 2)
    assert "line 3, column 2" in body["message"]
    assert server.get(f"{BASE}/prod/bad").status_code == 404  # nothing half-applied


def test_rollback_restores_old_content_as_a_new_version(server: ServerProcess) -> None:
    publish(server, "prod/db", '{"pool": 5}', "json")
    publish(server, "prod/db", '{"pool": 50}', "json")
    r = server.request("POST", f"{BASE}/prod/db/rollback", json={"version": 1, "author": "bob"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 3
    got = server.get(f"{BASE}/prod/db").json()
    assert got["content"] == '{"pool": 5}' and got["version"] == 3
    history = server.get(f"{BASE}/prod/db/history").json()
    assert [v["number"] for v in history["versions"]] == [3, 2, 1]
    assert history["versions"][0]["kind"] == "rollback" and history["versions"][0]["source"] == 1
    assert history["versions"][0]["sha256"] == history["versions"][2]["sha256"]
    diff = server.get(f"{BASE}/prod/db/diff", params={"from": 2, "to": 3}).json()["diff"]
    assert '-{"pool": 50}' in diff and '+{"pool": 5}' in diff
    assert server.get(f"{BASE}/prod/db/versions/2").json()["content"] == '{"pool": 50}'


def test_a_beta_reaches_only_matching_instances(server: ServerProcess) -> None:
    publish(server, "prod/flags", "new_ui = false\n", "properties")
    canary = Subscriber(server, "prod/flags", {"zone": "eu", "canary": "true"})
    plain = Subscriber(server, "prod/flags", {"zone": "eu"})
    canary.wait_content("new_ui = false\n")
    plain.wait_content("new_ui = false\n")
    r = server.request(
        "PUT",
        f"{BASE}/prod/flags/beta",
        json={"content": "new_ui = true\n", "selector": {"zone": "eu", "canary": "true"}},
    )
    assert r.status_code == 200, r.text
    assert canary.wait_content("new_ui = true\n")["beta"] is True
    labels = {"labels.zone": "eu", "labels.canary": "true"}
    assert server.get(f"{BASE}/prod/flags", params=labels).json()["beta"] is True
    assert server.get(f"{BASE}/prod/flags").json()["content"] == "new_ui = false\n"

    r = server.request("POST", f"{BASE}/prod/flags/beta/promote")
    assert r.status_code == 200 and r.json()["version"] == 2
    promoted = plain.wait_content("new_ui = true\n")
    assert promoted["beta"] is False and promoted["version"] == 2
    wait_for(lambda: canary.events[-1]["beta"] is False, what="the canary to leave the beta")
    # The plain subscriber never saw the beta: only the old content, then the promotion.
    assert plain.contents() == ["new_ui = false\n", "new_ui = true\n"]

    server.request("PUT", f"{BASE}/prod/flags/beta", json={
        "content": "new_ui = maybe\n", "selector": {"canary": "true"}})  # fmt: skip
    canary.wait_content("new_ui = maybe\n")
    assert server.request("DELETE", f"{BASE}/prod/flags/beta").status_code == 200
    wait_for(lambda: canary.contents()[-1] == "new_ui = true\n", what="the beta to be dropped")
    assert "new_ui = maybe\n" not in plain.contents()
    canary.stop.set()
    plain.stop.set()


def test_concurrent_publishes_never_share_a_version(server: ServerProcess) -> None:
    publish(server, "prod/race", "0", "text")

    def one(i: int) -> int:
        for _ in range(20):  # a lost race is a 409: the client retries
            r = server.request("PUT", f"{BASE}/prod/race", json={"content": str(i)})
            if r.status_code != 409:
                assert r.status_code == 200, r.text
                number: int = r.json()["version"]
                return number
        raise AssertionError("kept losing")

    with ThreadPoolExecutor(16) as pool:
        numbers = list(pool.map(one, range(1, 49)))
    assert sorted(numbers) == list(range(2, 50))
    history = server.get(f"{BASE}/prod/race/history").json()["versions"]
    assert [v["number"] for v in history] == list(range(49, 0, -1))


BAD_REQUESTS = [
    ("PUT", "/prod/x", {"content": '{"a": }', "format": "json"}, 400, "invalid_content"),
    ("PUT", "/prod/x", {"content": "a = = 1", "format": "toml"}, 400, "invalid_content"),
    ("PUT", "/prod/x", {"content": "x", "format": "xml"}, 400, "invalid_content"),
    ("PUT", "/prod/x", {"content": "x" * (512 * 1024 + 1)}, 413, "limit_exceeded"),
    ("PUT", "/prod/x", {"content": "x", "colour": 1}, 400, "invalid_request"),
    ("PUT", "/prod/x", {"format": "text"}, 400, "invalid_request"),
    ("PUT", "/pr%20od/x", {"content": "x"}, 400, "invalid_request"),
    ("GET", "/prod/missing", None, 404, "item_not_found"),
    ("GET", "/prod/missing/history", None, 404, "item_not_found"),
    ("GET", "/prod/missing/versions/1", None, 404, "version_not_found"),
    ("GET", "/prod/missing/versions/0", None, 400, "invalid_request"),
    ("GET", "/prod/missing/diff?from=1", None, 400, "invalid_request"),
    ("POST", "/prod/missing/rollback", {"version": 1}, 404, "item_not_found"),
    ("PUT", "/prod/missing/beta", {"content": "x", "selector": {"a": "b"}}, 404, "item_not_found"),
    ("POST", "/prod/missing/beta/promote", None, 404, "item_not_found"),
    ("DELETE", "/prod/missing/beta", None, 404, "item_not_found"),
    ("GET", "/prod/missing?labels.bad%20key=1", None, 400, "invalid_request"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_json_error(
    server: ServerProcess, method: str, path: str, body: Any, status: int, code: str
) -> None:
    r = server.request(method, BASE + path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]


def test_beta_needs_a_selector_and_valid_content(server: ServerProcess) -> None:
    publish(server, "prod/b", "a: 1\n")
    empty = server.request("PUT", f"{BASE}/prod/b/beta", json={"content": "a: 2", "selector": {}})
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_request"
    bad = server.request(
        "PUT", f"{BASE}/prod/b/beta", json={"content": "a: [", "selector": {"c": "1"}}
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_content"
    none = server.request("POST", f"{BASE}/prod/b/beta/promote")
    assert none.status_code == 404 and none.json()["error"] == "beta_not_found"


def test_cli_put_get_history_diff_rollback_beta(server: ServerProcess, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shoal.cli.config import app

    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, [*args, "--endpoints", server.url])
        assert result.exit_code == 0, result.output
        return result.output

    one, two = tmp_path / "app.yaml", tmp_path / "app2.yaml"
    one.write_text("workers: 2\n")
    two.write_text("workers: 8\n")
    assert json.loads(cli("put", "prod/app", str(one), "-m", "start", "--json"))["version"] == 1
    assert "version 2" in cli("put", "prod/app", str(two))
    assert cli("get", "prod/app") == "workers: 8\n"
    history = json.loads(cli("history", "prod/app", "--json"))
    assert [v["number"] for v in history["versions"]] == [2, 1]
    assert "start" in cli("history", "prod/app")
    assert "+workers: 8" in cli("diff", "prod/app", "1", "2")
    assert "version 3" in cli("rollback", "prod/app", "1")
    assert cli("get", "prod/app") == "workers: 2\n"
    cli("beta", "put", "prod/app", str(two), "--selector", "zone=eu")
    assert cli("get", "prod/app", "--label", "zone=eu") == "workers: 8\n"
    assert cli("get", "prod/app", "--label", "zone=us") == "workers: 2\n"
    assert json.loads(cli("beta", "promote", "prod/app", "--json"))["version"] == 4

    bad = tmp_path / "bad.json"
    bad.write_text('{"a": }')
    result = runner.invoke(app, ["put", "prod/app", str(bad), "--endpoints", server.url])
    assert result.exit_code == 1 and "line 1, column 7" in result.output
