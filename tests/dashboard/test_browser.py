"""The dashboard in headless Chromium against a real 3-member cluster.

Every page is loaded and screenshotted; then what a person would check: an instance
whose process is killed turns critical on the open page (no reload), a config with an
error is refused with its line and column shown, a rollback from the history, a weight
change and a deregistration through the API's validation, and a job's progress bar and
task stream filling while it runs.

Screenshots go to the test's directory; with SHOAL_UPDATE_SCREENSHOTS=1 (`make
screenshots`) they also replace docs/screenshots/, which the README shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.compute import Job
from shoal.compute.shoal_executor import ShoalExecutor
from shoal.testing import HttpService, LocalCluster, wait_for
from tests.compute import tasks

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "screenshots"
LIVE = 30_000  # ms a page has to follow its streams; generous: the machine is shared
STARTUP = 90.0
CHECK = {"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "300ms",
         "fall": 1, "rise": 1}  # fmt: skip
V1 = "limits:\n  page: 10\n  max: 50\n"
V2 = "limits:\n  page: 20\n  max: 100\n"


@dataclass
class World:
    cluster: LocalCluster
    url: str  # the member whose /ui the browser opens
    web: dict[str, HttpService]
    shots: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def world(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    web = {"w1": HttpService(), "w2": HttpService()}
    first = next(iter(cluster.members.values()))
    w = World(cluster, first.url, web, tmp_path_factory.mktemp("screenshots"))
    try:
        for n, (name, service) in enumerate(web.items()):
            body = {"address": "127.0.0.1", "port": service.port, "check": CHECK,
                    "zone": ["eu-1", "us-1"][n], "version": "2.1.0", "tags": ["http"],
                    "metadata": {"team": "web"}}  # fmt: skip
            assert w.api("PUT", f"/api/v1/services/web/instances/{name}", json=body).is_success
        body = {"address": "127.0.0.1", "port": 9, "weight": 2.0, "zone": "eu-1"}
        assert w.api("PUT", "/api/v1/services/api/instances/a1", json=body).is_success
        for content, author in ((V1, "ann"), (V2, "bob")):
            body = {"content": content, "format": "yaml", "author": author, "message": "sizes"}
            assert w.api("PUT", "/api/v1/config/blog/articles", json=body).is_success
        yield w
    finally:
        for service in web.values():
            service.stop()


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


def open_page(page: Any, world: World, path: str) -> None:
    page.goto(f"{world.url}/ui/{path}")
    page.wait_for_selector('#live[data-state="live"]', timeout=LIVE)


def shoot(page: Any, world: World, name: str) -> None:
    path = world.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("SHOAL_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)


def test_the_overview_shows_members_services_and_recent_events(page: Any, world: World) -> None:
    open_page(page, world, "")
    page.wait_for_selector("table.members tr[data-member]")
    wait_for(lambda: page.locator("table.members tr[data-health=healthy]").count() == 3, 30)
    assert page.locator("table.members tr[data-role=leader]").count() == 1
    leader = page.locator("#leader").inner_text()
    assert leader == world.cluster.leader().name
    web = page.locator('table.services tr[data-service="web"] td.count')
    web.wait_for()
    wait_for(lambda: web.get_attribute("data-healthy") == "2", 30, what="web 2/2")
    assert web.get_attribute("data-total") == "2"
    page.wait_for_selector("#events li.event.config")
    assert "blog/articles is now version 2" in page.locator("#events").inner_text()
    assert "web/w1 registered" in page.locator("#events").inner_text()
    shoot(page, world, "overview")


def test_each_page_loads(page: Any, world: World) -> None:
    pages = {
        "services": ("services", 'table.services tr[data-service="api"]'),
        "service": ("services/web", 'table.instances tr[data-instance="w1"]'),
        "config": ("config", 'table.items tr[data-item="blog/articles"]'),
        "config-item": ("config/blog/articles", 'table.diff tr.changed'),
        "kv": ("kv?prefix=/registry/", 'table.kv tr[data-key$="/api/instances/a1"]'),
    }  # fmt: skip
    for name, (path, ready) in pages.items():
        open_page(page, world, path)
        page.wait_for_selector(ready)
        shoot(page, world, name)
    assert page.locator('#nav a[data-page="kv"]').get_attribute("class") == "active"


def test_a_killed_instance_turns_critical_without_a_reload(page: Any, world: World) -> None:
    open_page(page, world, "services/web")
    row = 'table.instances tr[data-instance="w2"]'
    page.wait_for_selector(f'{row}[data-status="passing"]', timeout=LIVE)
    page.evaluate("window.loadedOnce = true")
    world.web["w2"].stop()  # SIGKILL: its checks now see "connection refused"
    page.wait_for_selector(f'{row}[data-status="critical"]', timeout=LIVE)
    assert page.evaluate("window.loadedOnce") is True  # the same page, not a reload
    assert page.locator("#summary").get_attribute("data-healthy") == "1"
    page.wait_for_selector('table.history tr[data-instance="w2"][data-status="critical"]')
    page.wait_for_selector(f'{row} td.probe[data-ok="false"]', timeout=LIVE)  # who saw it
    shoot(page, world, "service-critical")
    world.web["w2"].start()
    page.wait_for_selector(f'{row}[data-status="passing"]', timeout=LIVE)


def test_a_config_with_an_error_shows_its_line_and_column_and_writes_nothing(
    page: Any, world: World
) -> None:
    open_page(page, world, "config/blog/articles")
    page.wait_for_selector('#current[data-version="2"]')
    page.fill("#editor", "limits:\n  page: [1, 2\n  max: 3\n")
    page.click("#publish")
    problem = page.locator("#problem")
    problem.wait_for(state="visible")
    assert problem.get_attribute("data-line") and problem.get_attribute("data-column")
    text = problem.inner_text()
    assert f"line {problem.get_attribute('data-line')}, column " in text, text
    assert page.locator("#gutter span.bad").count() == 1
    assert "nothing was written" in page.locator("#message").inner_text()
    assert world.api("GET", "/api/v1/config/blog/articles").json()["version"] == 2
    shoot(page, world, "config-error")


def test_roll_back_from_the_history(page: Any, world: World) -> None:
    open_page(page, world, "config/blog/articles")
    info = page.locator("#current")
    info.wait_for()
    before = int(info.get_attribute("data-version") or 0)
    page.click('table.history tr[data-version="1"] button.rollback')
    page.wait_for_selector(f'#current[data-version="{before + 1}"]', timeout=LIVE)
    assert "rolled back" in page.locator("#message").inner_text()
    current = world.api("GET", "/api/v1/config/blog/articles").json()
    assert current["version"] == before + 1 and current["content"] == V1
    assert (
        page.locator(f'table.history tr[data-version="{before + 1}"]')
        .inner_text()
        .count("rollback to 1")
    )
    assert page.locator("#editor").input_value() == V1


def test_weight_and_deregistration_go_through_the_api(page: Any, world: World) -> None:
    open_page(page, world, "services/api")
    row = page.locator('table.instances tr[data-instance="a1"]')
    row.wait_for()
    # Enter in the input, not a click on "Set": a live re-render (a check result, another
    # instance's status) can move the button between Playwright's hit test and its click.
    row.locator("input.weight").fill("-1")
    row.locator("input.weight").press("Enter")
    page.wait_for_selector("#message.error")
    assert "weight" in page.locator("#message").inner_text()  # the API's own message
    assert world.api("GET", "/api/v1/services/api/instances").json()["instances"][0]["weight"] == 2
    row.locator("input.weight").fill("3.5")
    row.locator("button.save-weight").click()  # the button works too (no error to wait on)
    wait_for(
        lambda: (
            world.api("GET", "/api/v1/services/api/instances").json()["instances"][0]["weight"]
            == 3.5
        ),
        30,
        what="the new weight",
    )
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator('table.instances tr[data-instance="a1"] button.deregister').click()
    page.wait_for_selector('table.instances tr[data-instance="a1"]', state="detached", timeout=LIVE)
    assert world.api("GET", "/api/v1/services/api/instances").status_code in (200, 404)
    assert not world.api("GET", "/api/v1/services/api/instances").json().get("instances")


@pytest.fixture
def worker(world: World, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("ab")
    endpoints = ",".join(world.cluster.endpoints())
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal.cli.main", "worker", "--server", endpoints,
         "--id", "worker-1", "--slots", "2", "--no-metrics"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    log.close()
    try:
        yield proc
    finally:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_a_jobs_progress_and_task_stream_fill_while_it_runs(
    page: Any, world: World, worker: subprocess.Popen[bytes]
) -> None:
    open_page(page, world, "jobs")
    endpoints = ",".join(world.cluster.endpoints())
    ran: dict[str, Any] = {}

    def run() -> None:
        with ShoalExecutor(endpoints, min_workers=1, wait_for_workers=STARTUP) as ex:
            ran["outcome"] = Job("naps", tasks.nap, [0.25] * 16).run(ex)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    page.wait_for_selector("table.jobs tr[data-job]", timeout=STARTUP * 1000)
    row = page.locator("table.jobs tr[data-job]").first
    job_id = row.get_attribute("data-job")
    page.wait_for_selector(f'table.jobs tr[data-job="{job_id}"][data-state="done"]', timeout=LIVE)
    bar = page.locator(f'table.jobs tr[data-job="{job_id}"] .progress')
    assert bar.get_attribute("data-done") == bar.get_attribute("data-total") == "16"
    shoot(page, world, "jobs")
    thread.join(30)
    assert ran["outcome"].result == [0.25] * 16
    open_page(page, world, f"jobs/{job_id}")
    page.wait_for_selector('#job-state[data-state="done"]')
    page.wait_for_selector('.lane[data-worker] .bar-attempt[data-outcome="finished"]')
    assert page.locator("table.attempts tr[data-task]").count() >= 16
    shoot(page, world, "job")
