"""`shoal up` on the blog example: real processes, real control plane, real SQLite.

One `shoal up` per module runs the blog; the tests then use it as a user would, through
the SDK's client, its gateway and `shoal scale` / `shoal restart` / `shoal ps`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shoal.cli.main import app
from shoal.cli.up.control import request
from shoal.cli.up.manifest import ManifestError, load_manifest
from shoal.client import ControlPlane
from shoal.service import CallError, ClientPolicy, ServiceClient
from shoal.testing import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
BLOG = REPO / "examples" / "blog" / "shoal.yaml"


# -- the manifest ---------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shoal.yaml"
    path.write_text(text)
    return path


def test_the_blog_manifest_is_valid() -> None:
    manifest, root = load_manifest(BLOG)
    assert set(manifest.services) == {"users", "articles"}
    assert all(s.replicas == 2 for s in manifest.services.values())
    assert root == BLOG.parent
    assert manifest.gateway is not None
    assert [(r["prefix"], r["service"]) for r in manifest.gateway.table()["routes"]] == [
        ("/users", "users"),
        ("/articles", "articles"),
    ]


SERVICE = "services:\n  s: {command: run}\n"


@pytest.mark.parametrize(
    ("gateway", "problem"),
    [
        ("gateway: {}", "gateway: give its routes"),
        ("gateway: {routes: [{prefix: /, servic: s}]}", "gateway: routes[0].servic: unknown key"),
        ("gateway: {routes: [{prefix: nope, service: s}]}", "gateway: routes[0].prefix"),
        ("gateway: {routes_item: s, policy: {timeout: 2s}}", "gateway: routes_item: 's' is not"),
        (
            "gateway: {routes: [{prefix: /, service: s}], policy: {balancer: fastest}}",
            "gateway: policy: balancer must be one of",
        ),
        (
            "gateway: {routes: [{prefix: /, service: s}], routes_file: r.yaml}",
            "routes and routes_file exclude each other",
        ),
        ("gateway: {routes_file: r.yaml, port: 0}", "gateway.port"),
        ("gateway: {routes_file: nope.yaml}", "gateway.routes_file: nope.yaml does not exist"),
        ("gateway: {routes_file: r.yaml, access_log: '{log}'}", "unknown placeholder {log}"),
        (
            "gateway: {routes_file: bad.yaml}",
            "gateway.routes_file: bad.yaml: routes[0].max_body: expected a size",
        ),
    ],
)
def test_every_gateway_problem_is_reported_before_anything_starts(
    tmp_path: Path, gateway: str, problem: str
) -> None:
    (tmp_path / "r.yaml").write_text("routes: [{prefix: /, service: s}]\n")
    (tmp_path / "bad.yaml").write_text("routes: [{prefix: /, service: s, max_body: lots}]\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, f"name: x\n{SERVICE}{gateway}\n"))
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_no_service_may_take_the_gateways_name(tmp_path: Path) -> None:
    text = "name: x\nservices:\n  gateway: {command: run}\ngateway: {routes_item: a/b}\n"
    with pytest.raises(ManifestError, match=r"services\.gateway: that name is the gateway's"):
        load_manifest(write(tmp_path, text))
    # Without a gateway section the name is free.
    load_manifest(write(tmp_path, "name: x\nservices:\n  gateway: {command: run}\n"))


def test_every_manifest_problem_is_reported_with_where_it_is(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: "bad name!"
services:
  web:
    command: python app.py --port {prot}
    replicas: many
    colour: blue
config:
  nonamespace: {content: x}
""",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    text = "\n".join(caught.value.problems)
    assert "name:" in text
    assert "services.web.command" in text and "{prot}" in text
    assert "services.web.replicas" in text
    assert "services.web.colour" in text
    assert "config" in text and "NAMESPACE/NAME" in text


def test_bad_yaml_and_a_missing_config_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not valid YAML at line 2, column 11"):
        load_manifest(write(tmp_path, "name: x\nservices: :\n"))
    path = write(
        tmp_path,
        "name: x\nconfig:\n  a/b: {file: nope.yaml}\nservices:\n  s: {command: run}\n",
    )
    with pytest.raises(ManifestError, match=r"nope\.yaml does not exist"):
        load_manifest(path)


def test_up_refuses_a_bad_manifest_before_starting_anything(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nservices: {}\n")
    result = CliRunner().invoke(app, ["up", str(path)])
    assert result.exit_code == 1 and "at least one service" in result.output
    assert not (tmp_path / ".shoal").exists()


# -- the blog under shoal up ----------------------------------------------------------


class Blog:
    def __init__(self, tmp: Path) -> None:
        self.port, self.gateway_port = free_port(), free_port()
        self.endpoints = f"http://127.0.0.1:{self.port}"
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.data = tmp / "data"
        self.log = tmp / "up.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shoal.cli.main", "up", str(BLOG),
                 "--control-port", str(self.port), "--data-dir", str(self.data),
                 "--gateway-port", str(self.gateway_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def ps(self) -> dict[str, list[dict[str, object]]]:
        answer = request(self.data / "up.sock", {"op": "ps"})
        services: dict[str, list[dict[str, object]]] = answer["services"]
        return services

    def all_up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            replicas = [r for rs in self.ps().values() for r in rs]
        except OSError:
            return False
        return bool(replicas) and all(r["state"] == "up" for r in replicas)

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(app, [*args, "-f", str(BLOG), "--data-dir", str(self.data)])
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture(scope="module")
def blog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blog]:
    running = Blog(tmp_path_factory.mktemp("blog"))
    try:
        wait_for(running.all_up, 90, interval=0.1, what="the blog under shoal up")
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGINT)
            try:
                running.proc.wait(60)
            except subprocess.TimeoutExpired:
                running.proc.kill()


def clients(blog: Blog) -> tuple[ServiceClient, ServiceClient]:
    policy = ClientPolicy(balancer="round_robin")
    return (
        ServiceClient("users", endpoints=blog.endpoints, policy=policy),
        ServiceClient("articles", endpoints=blog.endpoints, policy=policy),
    )


def test_the_blog_works_end_to_end(blog: Blog) -> None:
    users, articles = clients(blog)
    with users, articles:
        user = users.post("/users", json={"name": "Ada"})
        assert user.status_code == 201
        uid = user.json()["id"]
        created = articles.post("/articles", json={"author_id": uid, "title": "Engines"})
        assert created.status_code == 201, created.text
        assert created.json()["author"] == "Ada"
        listed = users.get(f"/users/{uid}/articles").json()
        assert [a["title"] for a in listed["articles"]] == ["Engines"]
        assert listed["served_by"].startswith("users-")
        assert listed["articles_served_by"].startswith("articles-")

        unknown = articles.post("/articles", json={"author_id": 999_999, "title": "Ghost"})
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == "unknown author: no user 999999"
        bad = users.post("/users", json={"name": ""})
        assert bad.status_code == 400 and "name must be" in bad.json()["message"]

        # Both replicas of each service answer: discovery and balancing at work.
        assert {users.get(f"/users/{uid}").json()["served_by"] for _ in range(10)} == {
            "users-1",
            "users-2",
        }


def test_the_gateway_routes_to_both_services_and_is_supervised(blog: Blog) -> None:
    with httpx.Client(base_url=blog.gateway, timeout=10) as http:
        user = http.post("/users", json={"name": "Edsger"})
        assert user.status_code == 201, user.text
        uid = user.json()["id"]
        assert user.headers["x-request-id"]
        article = http.post("/articles", json={"author_id": uid, "title": "GOTO"})
        assert article.status_code == 201 and article.json()["author"] == "Edsger"
        # The manifest's gateway.policy is round robin: both replicas answer in turn.
        served = [http.get(f"/users/{uid}").json()["served_by"] for _ in range(4)]
        assert sorted(served) == ["users-1", "users-1", "users-2", "users-2"], served
        missing = http.get("/comments")
        assert missing.status_code == 404 and missing.json()["error"] == "no_route"

        (worker,) = blog.ps()["gateway"]
        assert worker["name"] == "gateway-1" and worker["port"] == blog.gateway_port
        admin = f"http://127.0.0.1:{worker['admin_port']}"
        routes = httpx.get(f"{admin}/routes", timeout=5).json()["routes"]
        assert {(r["prefix"], r["service"], r["balancer"]) for r in routes} == {
            ("/users", "users", "round_robin"),
            ("/articles", "articles", "round_robin"),
        }
        listing = blog.cli("ps")
        assert "gateway-1" in listing and f"gateway at {blog.gateway}" in listing

        # A gateway worker that dies is started again, on the same ports, and serves.
        os.kill(int(worker["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        wait_for(
            lambda: any(
                r["pid"] != worker["pid"] and r["state"] == "up" for r in blog.ps()["gateway"]
            ),
            30,
            what="the gateway worker to be restarted",
        )
        (again,) = blog.ps()["gateway"]
        assert again["restarts"] == 1 and again["admin_port"] == worker["admin_port"]
        assert http.get(f"/users/{uid}").json()["name"] == "Edsger"


def test_a_page_size_published_in_the_config_center_applies_without_a_restart(
    blog: Blog,
) -> None:
    users, articles = clients(blog)
    with users, articles, ControlPlane(blog.endpoints) as cp:
        uid = users.post("/users", json={"name": "Grace"}).json()["id"]
        for i in range(4):
            articles.post("/articles", json={"author_id": uid, "title": f"t{i}"})
        pids = {r["pid"] for r in blog.ps()["articles"]}
        cp.config.publish("blog/articles", "page_size: 3\n", "yaml")
        wait_for(lambda: articles.get("/articles").json()["page_size"] == 3, 20, what="reload")
        assert len(articles.get("/articles", params={"author_id": uid}).json()["articles"]) == 3
        cp.config.publish("blog/articles", "page_size: 0\n", "yaml")  # invalid for the model
        time.sleep(0.5)
        assert articles.get("/articles").json()["page_size"] == 3  # the last valid one stays
        assert {r["pid"] for r in blog.ps()["articles"]} == pids  # nothing restarted


def test_a_killed_replica_costs_no_call_and_is_restarted(blog: Blog) -> None:
    users, _ = clients(blog)
    failures: list[str] = []
    calls = 0
    stop = threading.Event()
    with users:
        uid = users.post("/users", json={"name": "Barbara"}).json()["id"]

        def load() -> None:
            nonlocal calls
            while not stop.is_set():
                try:
                    if users.get(f"/users/{uid}").status_code != 200:
                        failures.append("status")
                    calls += 1
                except CallError as error:
                    failures.append(error.message)

        thread = threading.Thread(target=load)
        thread.start()
        victim = next(r for r in blog.ps()["users"] if r["state"] == "up")
        time.sleep(0.3)
        os.kill(int(victim["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        wait_for(
            lambda: any(
                r["name"] == victim["name"] and r["pid"] != victim["pid"] and r["state"] == "up"
                for r in blog.ps()["users"]
            ),
            30,
            what="the killed replica to be restarted",
        )
        time.sleep(0.3)
        stop.set()
        thread.join(10)
    assert failures == [] and calls > 20, failures[:5]
    restarted = next(r for r in blog.ps()["users"] if r["name"] == victim["name"])
    assert restarted["restarts"] == 1


def test_rolling_restart_under_load_fails_no_call_and_scale_changes_the_replicas(
    blog: Blog,
) -> None:
    _, articles = clients(blog)
    failures: list[str] = []
    calls = 0
    stop = threading.Event()
    with articles:

        def load() -> None:
            nonlocal calls
            while not stop.is_set():
                try:
                    if articles.get("/articles").status_code != 200:
                        failures.append("status")
                    calls += 1
                except CallError as error:
                    failures.append(error.message)

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        before = [r["name"] for r in blog.ps()["articles"]]
        output = blog.cli("restart", "articles")
        stop.set()
        for t in threads:
            t.join(10)
    after = [r["name"] for r in blog.ps()["articles"]]
    assert failures == [] and calls > 20, failures[:5]
    assert len(after) == 2 and not set(after) & set(before), (before, after, output)

    assert "users-1" in blog.cli("scale", "users=3") or len(blog.ps()["users"]) == 3
    with ControlPlane(blog.endpoints) as cp:
        wait_for(lambda: len(cp.registry.instances("users").instances) == 3, 20, what="3 users")
        blog.cli("scale", "users=2")
        wait_for(lambda: len(cp.registry.instances("users").instances) == 2, 20, what="2 users")
    assert "users" in blog.cli("ps")


def test_ctrl_c_stops_every_process_and_deregisters_them(tmp_path: Path) -> None:
    running = Blog(tmp_path)
    try:
        wait_for(running.all_up, 90, interval=0.1, what="the blog")
        pids = [int(r["pid"]) for rs in running.ps().values() for r in rs]  # type: ignore[call-overload]
        running.proc.send_signal(signal.SIGINT)
        assert running.proc.wait(60) == 0
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
    for pid in pids:
        wait_for(lambda pid=pid: not _alive(pid), 10, what=f"pid {pid} to exit")  # type: ignore[misc]
    log = running.log.read_text()
    assert "deregistered" in log or "Shutting down" in log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
