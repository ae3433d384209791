"""A member that has just taken office answers from every write committed before.

Writes that plan from the leader's store -- a config center write reads the item's
records, a registration reads the previous record, a heartbeat finds the instance's
lease -- must not run against a store that has not yet applied the entries committed
before the leader's term. Seen once under load before the fix: kill -9 a single member,
restart it, and as soon as /readyz answered, `DELETE .../beta` answered 404 for a beta
that existed.

These tests ask from the moment the restarted member listens, in a tight loop, so the
first answer that is not 503 ("not ready, retry") lands as early as a client can make
it; it must be the right one. Several restarts per test, since the window is narrow.
"""

from __future__ import annotations

import time

import httpx

from shoal.testing import ServerProcess

RESTARTS = 4
BASE = "/api/v1/config"


def first_answer(server: ServerProcess, method: str, path: str, **kwargs: object) -> httpx.Response:
    """The first answer other than 503 of a member that is starting, asked in a tight
    loop from before it listens."""
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                answer = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError:
                continue  # not listening yet
            if answer.status_code != 503:
                return answer
    raise AssertionError(f"{method} {path}: no answer but 503 within 30 s")


def restart(server: ServerProcess) -> None:
    server.kill()
    server.start()


def test_a_restarted_member_deletes_a_beta_written_just_before_the_kill(
    server: ServerProcess,
) -> None:
    publish = {"content": "a: 1\n", "format": "yaml"}
    assert server.request("PUT", f"{BASE}/prod/x", json=publish).status_code == 200
    beta = {"content": "a: 2\n", "selector": {"zone": "eu"}}
    for trial in range(RESTARTS):
        put = server.request("PUT", f"{BASE}/prod/x/beta", json=beta)
        assert put.status_code == 200, put.text
        restart(server)
        answer = first_answer(server, "DELETE", f"{BASE}/prod/x/beta")
        assert answer.status_code == 200, (trial, answer.text)
        assert answer.json()["dropped"] is True


def test_a_restarted_member_knows_an_instance_registered_just_before_the_kill(
    server: ServerProcess,
) -> None:
    for trial in range(RESTARTS):
        path = f"/api/v1/services/api/instances/i{trial}"
        body = {
            "address": "127.0.0.1",
            "port": 8000 + trial,
            "check": {"type": "ttl", "ttl": "30s"},
        }
        registered = server.request("PUT", path, json=body)
        assert registered.status_code == 200, registered.text
        restart(server)
        beat = first_answer(server, "PUT", f"{path}/heartbeat")
        assert beat.status_code == 200, (trial, beat.text)
        assert beat.json()["lease"] == registered.json()["lease"]
