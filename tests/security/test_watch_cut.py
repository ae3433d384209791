"""Open watches are cut when their token is deleted or loses the rule, on a real `--acl`
member: the stream ends with `event: error` `token_revoked`, the member unsubscribes it,
and a watch whose token still grants it goes on receiving events."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.testing import ServerProcess, wait_for

DEADLINE = 30.0  # seconds a cut has to arrive: generous on a shared machine
READ_APP = [{"key": "app/", "access": "read"}]


@dataclass
class Member:
    server: ServerProcess
    root: str

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.root}"}
        return httpx.request(method, self.server.url + path, headers=headers, timeout=5, **kwargs)

    def token(self, policy: str, rules: list[dict[str, Any]]) -> tuple[str, str]:
        assert self.call("PUT", f"/api/v1/acl/policies/{policy}", json={"rules": rules}).is_success
        made = self.call("POST", "/api/v1/acl/tokens", json={"policies": [policy]}).json()
        return made["token"], made["accessor"]

    def watchers(self) -> float:
        for line in self.call("GET", "/metrics").text.splitlines():
            if line.startswith("shoal_watchers "):
                return float(line.split()[1])
        raise AssertionError("no shoal_watchers gauge")


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    root = tmp_path_factory.mktemp("cut")
    proc = ServerProcess("n1", Path(root) / "n1" / "data", extra=["--acl"]).start()
    try:
        proc.wait_ready()
        answer = httpx.post(proc.url + "/api/v1/acl/bootstrap", timeout=5)
        assert answer.status_code == 200, answer.text
        yield Member(proc, answer.json()["token"])
    finally:
        proc.kill()


class Watch:
    """A watch read on a thread: each SSE frame (event, data) onto a queue; None at end."""

    def __init__(self, url: str, token: str) -> None:
        self.frames: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self.opened = threading.Event()
        self.status = 0
        self.clean_end = False  # the response ended as HTTP says (its last chunk), no error
        self.error: Exception | None = None
        self._args = (url, token)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.opened.wait(DEADLINE), "the watch did not open"

    def _run(self) -> None:
        url, token = self._args
        headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
        timeout = httpx.Timeout(5, read=60)
        try:
            with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
                self.status = response.status_code
                self.opened.set()
                kind = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        self.frames.put((kind, json.loads(line.removeprefix("data:"))))
                        kind = "message"
            self.clean_end = True
        except httpx.HTTPError as error:  # e.g. the member killed at the end of the module
            self.error = error
        finally:
            self.opened.set()
            self.frames.put(None)

    def next(self, timeout: float = DEADLINE) -> tuple[str, Any] | None:
        return self.frames.get(timeout=timeout)

    def ended(self) -> bool:
        return not self._thread.is_alive()


def test_a_watch_is_cut_when_its_token_is_deleted(member: Member) -> None:
    secret, accessor = member.token("read-app", READ_APP)
    watch = Watch(f"{member.server.url}/api/v1/watch?prefix=app/", secret)
    assert watch.status == 200
    assert member.call("PUT", "/api/v1/kv/app/a", json={"value": "1"}).is_success
    kind, event = watch.next() or ("", {})
    assert kind == "put" and event["kv"]["key"] == "app/a", (kind, event)
    watching = member.watchers()
    assert member.call("DELETE", f"/api/v1/acl/tokens/{accessor}").is_success
    kind, error = watch.next() or ("", {})
    assert kind == "error" and error["error"] == "token_revoked", (kind, error)
    assert watch.next() is None and watch.clean_end, watch.error  # and the response ended
    wait_for(lambda: member.watchers() == watching - 1, DEADLINE, what="the member unsubscribed")
    # The same token cannot reopen it.
    again = httpx.get(
        f"{member.server.url}/api/v1/watch?prefix=app/",
        headers={"authorization": f"Bearer {secret}"},
        timeout=5,
    )
    assert again.status_code == 401


def test_a_watch_is_cut_when_its_policy_loses_the_rule_and_others_go_on(member: Member) -> None:
    narrow, _ = member.token("narrowed", READ_APP)
    steady, _ = member.token("steady", READ_APP)
    cut = Watch(f"{member.server.url}/api/v1/watch?prefix=app/", narrow)
    kept = Watch(f"{member.server.url}/api/v1/watch?prefix=app/", steady)
    # The policy now grants another prefix only: the watch of app/ is no longer covered.
    rules = [{"key": "other/", "access": "read"}]
    assert member.call("PUT", "/api/v1/acl/policies/narrowed", json={"rules": rules}).is_success
    kind, error = cut.next() or ("", {})
    assert kind == "error" and error["error"] == "token_revoked", (kind, error)
    assert cut.next() is None and cut.clean_end, cut.error
    # A watch whose token still grants it was not touched: it gets the next write.
    assert member.call("PUT", "/api/v1/kv/app/b", json={"value": "2"}).is_success
    kind, event = kept.next() or ("", {})
    assert kind == "put" and event["kv"]["key"] == "app/b", (kind, event)
    assert not kept.ended()
