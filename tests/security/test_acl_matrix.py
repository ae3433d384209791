"""ACLs on real members: each API family x (no token, wrong token, read-only token, right
token) -> the expected status, with nothing changed by a refused write; watches outside
a token's rights refused; the reserved keys out of reach; writes forwarded with tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.client import ControlPlane
from shoal.client.errors import BadRequest
from shoal.testing import LocalCluster, ServerProcess, wait_for

Client = httpx.Client


@dataclass
class Acl:
    server: ServerProcess
    root: str  # the bootstrap (management) token

    def client(self, token: str | None) -> Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=5)

    def token(self, name: str, rules: list[dict[str, Any]]) -> str:
        with self.client(self.root) as c:
            assert c.put(f"/api/v1/acl/policies/{name}", json={"rules": rules}).status_code == 200
            answer = c.post("/api/v1/acl/tokens", json={"policies": [name]})
            assert answer.status_code == 200, answer.text
            token: str = answer.json()["token"]
            return token


@pytest.fixture(scope="module")
def acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acl]:
    root = tmp_path_factory.mktemp("acl")
    proc = ServerProcess("n1", root / "n1" / "data", extra=["--acl"]).start()
    try:
        proc.wait_ready()
        answer = httpx.post(proc.url + "/api/v1/acl/bootstrap", timeout=5)
        assert answer.status_code == 200, answer.text
        yield Acl(proc, answer.json()["token"])
    finally:
        proc.kill()


# family -> (rules of its policy, a write and whether it changed anything, a read)
Write = Callable[[Client], httpx.Response]
Changed = Callable[[Client], bool]


def _lease(root: Client) -> int:
    lease_id: int = root.post("/api/v1/leases", json={"ttl": 300}).json()["id"]
    return lease_id


FAMILIES: dict[str, dict[str, Any]] = {
    "kv": {
        "rule": {"key": "app/"},
        "write": lambda c, _: c.put("/api/v1/kv/app/k", json={"value": "v"}),
        "changed": lambda root, _: root.get("/api/v1/kv/app/k").status_code == 200,
        "read": lambda c, _: c.get("/api/v1/kv", params={"prefix": "app/"}),
    },
    "leases": {
        "rule": {"leases": True},
        "write": lambda c, lease: c.delete(f"/api/v1/leases/{lease}"),
        "changed": lambda root, lease: root.get(f"/api/v1/leases/{lease}").status_code == 404,
        "read": lambda c, lease: c.get(f"/api/v1/leases/{lease}"),
    },
    "registry": {
        "rule": {"service": "users"},
        "write": lambda c, _: c.put(
            "/api/v1/services/users/instances/i1", json={"address": "127.0.0.1", "port": 9000}
        ),
        "changed": lambda root, _: bool(
            root.get("/api/v1/services/users/instances").json()["instances"]
        ),
        "read": lambda c, _: c.get("/api/v1/services/users/instances"),
    },
    "config": {
        "rule": {"config": "prod/"},
        "write": lambda c, _: c.put(
            "/api/v1/config/prod/app", json={"content": '{"a": 1}', "format": "json"}
        ),
        "changed": lambda root, _: root.get("/api/v1/config/prod/app").status_code == 200,
        "read": lambda c, _: c.get("/api/v1/config", params={"namespace": "prod"}),
    },
    "jobs": {
        "rule": {"jobs": True},
        "write": lambda c, _: c.put("/api/v1/kv//compute/jobs/j1", json={"value": "{}"}),
        "changed": lambda root, _: root.get("/api/v1/kv//compute/jobs/j1").status_code == 200,
        "read": lambda c, _: c.get("/api/v1/kv", params={"prefix": "/compute/"}),
    },
    "cluster": {
        "rule": {"cluster": True},
        "write": lambda c, _: c.post("/api/v1/compact", json={"revision": 1}),
        "changed": None,  # compaction leaves no record to look at
        "read": lambda c, _: c.get("/api/v1/cluster"),
    },
}
CREDENTIALS = {
    "none": (401, 401),
    "wrong": (401, 401),
    "read-only": (403, 200),
    "right": (200, 200),
}


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_matrix(acl: Acl, family: str, credential: str) -> None:
    spec = FAMILIES[family]
    tokens = {
        "none": None,
        "wrong": "0" * 64,
        "read-only": acl.token(f"{family}-ro", [{**spec["rule"], "access": "read"}]),
        "right": acl.token(f"{family}-rw", [{**spec["rule"], "access": "write"}]),
    }
    write_status, read_status = CREDENTIALS[credential]
    with acl.client(acl.root) as root, acl.client(tokens[credential]) as c:
        lease = _lease(root)
        # Start from nothing, so "changed" can only be this request's doing.
        root.delete("/api/v1/kv/app/k")
        root.delete("/api/v1/services/users/instances/i1")
        root.delete("/api/v1/config/prod/app")
        root.delete("/api/v1/kv//compute/jobs/j1")
        answer = spec["read"](c, lease)
        assert answer.status_code == read_status, answer.text
        answer = spec["write"](c, lease)
        assert answer.status_code == write_status, answer.text
        if write_status != 200:
            body = answer.json()
            assert body["error"] == ("unauthorized" if write_status == 401 else "permission_denied")
            if write_status == 403:
                assert ":write" in body["permission"] and body["permission"] in body["message"]
            if spec["changed"] is not None:
                assert not spec["changed"](root, lease), "a refused write changed the store"
        elif spec["changed"] is not None:
            assert spec["changed"](root, lease)


@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_watch_matrix_and_a_prefix_outside_the_rights(acl: Acl, credential: str) -> None:
    tokens = {
        "none": None,
        "wrong": "f" * 64,
        "read-only": acl.token("watch-ro", [{"key": "app/", "access": "read"}]),
        "right": acl.token("watch-rw", [{"key": "app/", "access": "write"}]),
    }
    expected = CREDENTIALS[credential][1]
    with acl.client(tokens[credential]) as c:
        with c.stream("GET", "/api/v1/watch", params={"prefix": "app/"}) as stream:
            assert stream.status_code == expected
        for params in ({"prefix": "ap"}, {"prefix": ""}, {}, {"key": "other/x"}):
            with c.stream("GET", "/api/v1/watch", params=params) as stream:
                assert stream.status_code == (expected if expected != 200 else 403), params
        with c.stream("GET", "/api/v1/services/users/watch") as stream:
            assert stream.status_code == (expected if expected != 200 else 403)
        inside = {"prefixes": ["app/a/", "app/b/"]}
        with c.stream("GET", "/api/v1/watch", params=inside) as stream:
            assert stream.status_code == expected
        # One forbidden prefix refuses the whole set, wherever it stands in it.
        for bad in (["app/a/", "other/"], ["other/", "app/a/"], ["app/", "ap"]):
            with c.stream("GET", "/api/v1/watch", params={"prefixes": bad}) as stream:
                assert stream.status_code == (expected if expected != 200 else 403), bad


def test_the_raw_kv_api_cannot_reach_what_the_registry_api_refuses(acl: Acl) -> None:
    token = acl.token("kv-app", [{"key": "app/", "access": "write"}])
    with acl.client(token) as c:
        answer = c.put("/api/v1/kv//registry/services/users/instances/x", json={"value": "{}"})
        assert answer.status_code == 403
        txn = {
            "success": [
                {"put": {"key": "app/ok", "value": "1"}},
                {"put": {"key": "x", "value": "1"}},
            ]
        }
        answer = c.post("/api/v1/txn", json=txn)
        assert answer.status_code == 403 and answer.json()["permission"] == "key:write:x"
        assert c.get("/api/v1/kv/app/ok").status_code == 404  # the whole txn was refused
        assert c.post("/api/v1/txn", json={"success": [txn["success"][0]]}).status_code == 200


def test_tokens_are_stored_hashed_and_the_reserved_keys_are_out_of_reach(acl: Acl) -> None:
    everything = acl.token("everything", [{"key": "", "access": "write"}])
    with acl.client(everything) as c:
        assert c.put("/api/v1/kv/anything", json={"value": "1"}).status_code == 200
        assert c.get("/api/v1/kv", params={"prefix": "/_shoal/acl/"}).status_code == 403
        assert c.get("/api/v1/kv", params={"prefix": ""}).status_code == 403
        forged = {"success": [{"put": {"key": "/_shoal/acl/tokens/abc", "value": "{}"}}]}
        assert c.post("/api/v1/txn", json=forged).status_code == 403
    with acl.client(acl.root) as root:
        stored = root.get("/api/v1/kv", params={"prefix": "/_shoal/acl/tokens/"}).json()["kvs"]
    assert stored and all(
        everything not in kv["value"] and acl.root not in kv["value"] for kv in stored
    )


def test_bootstrap_works_once_and_deleted_tokens_stop_working(acl: Acl) -> None:
    again = httpx.post(acl.server.url + "/api/v1/acl/bootstrap", timeout=5)
    assert again.status_code == 409 and again.json()["error"] == "already_bootstrapped"
    token = acl.token("temp", [{"key": "tmp/", "access": "read"}])
    with acl.client(acl.root) as root, acl.client(token) as c:
        me = c.get("/api/v1/acl/token/self").json()
        assert c.get("/api/v1/kv", params={"prefix": "tmp/"}).status_code == 200
        assert c.get("/api/v1/acl/tokens").status_code == 403  # acl:read is not granted
        assert root.delete(f"/api/v1/acl/tokens/{me['accessor']}").status_code == 200
        assert c.get("/api/v1/kv", params={"prefix": "tmp/"}).status_code == 401


def test_the_client_sends_its_token(acl: Acl, monkeypatch: pytest.MonkeyPatch) -> None:
    token = acl.token("client-app", [{"key": "app/", "access": "write"}])
    with ControlPlane(acl.server.url, token=token) as plane:
        assert plane.put("app/from-client", "1") > 0
        with pytest.raises(BadRequest) as refused:
            plane.put("elsewhere", "1")
        assert refused.value.status == 403
    monkeypatch.setenv("SHOAL_TOKEN", token)
    with ControlPlane(acl.server.url) as plane:
        assert plane.get("app/from-client") is not None


def test_a_three_member_acl_cluster_forwards_writes_with_the_token(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, 3, extra=["--acl"]).start()
    try:
        members = list(cluster.members.values())
        for m in members:
            m.wait_ready()
        answer = wait_for(
            lambda: (
                (r := httpx.post(members[0].url + "/api/v1/acl/bootstrap", timeout=5)).status_code
                == 200
                and r
            ),
            20,
            what="bootstrap (forwarded to the leader if need be)",
        )
        root = answer.json()["token"]
        headers = {"authorization": f"Bearer {root}"}
        leader = members[0].get("/api/v1/cluster", headers=headers).json()["leader"]
        follower = next(m for m in members if m.name != leader)
        # The follower knows the token once the bootstrap is replicated to it.
        wait_for(
            lambda: follower.get("/api/v1/kv/a", headers=headers).status_code == 404,
            10,
            what="the follower to know the token",
        )
        put = follower.request("PUT", "/api/v1/kv/a", json={"value": "1"}, headers=headers)
        assert put.status_code == 200, put.text
        assert follower.request("PUT", "/api/v1/kv/a", json={"value": "2"}).status_code == 401
        # Read your ACL writes on a follower: it answers a forwarded ACL write only once it
        # has applied it, so what it just made works there at once (no waiting here).
        rules = {"rules": [{"key": "a", "access": "read"}]}
        made = follower.request("PUT", "/api/v1/acl/policies/r", json=rules, headers=headers)
        assert made.status_code == 200, made.text
        for _ in range(10):
            token = follower.request(
                "POST", "/api/v1/acl/tokens", json={"policies": ["r"]}, headers=headers
            ).json()
            mine = {"authorization": f"Bearer {token['token']}"}
            assert follower.get("/api/v1/kv/a", headers=mine).status_code == 200
            gone = follower.request(
                "DELETE", f"/api/v1/acl/tokens/{token['accessor']}", headers=headers
            )
            assert gone.status_code == 200, gone.text
            assert follower.get("/api/v1/kv/a", headers=mine).status_code == 401
        # Members record their addresses with the member secret once ACLs are bootstrapped.
        wait_for(
            lambda: all(
                m["client_url"]
                for m in follower.get("/api/v1/cluster", headers=headers).json()["members"]
            ),
            15,
            what="every member's address record",
        )
    finally:
        cluster.stop()
