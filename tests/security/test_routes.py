"""The (method, path) -> permission table: every route of docs/api.md, and every route
the member's app really serves is listed (a new route cannot ship unjudged)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shoal.node.app import build_app
from shoal.node.health import HealthChecker
from shoal.node.lifespan import RunningMember
from shoal.node.member import Member, MemberConfig
from shoal.node.registry_cache import RegistryCache
from shoal.node.routing import LeaderLink
from shoal.security.policy import Need
from shoal.security.routes import ACL_API, PUBLIC, TXN, Refusal, is_watch, need_for, txn_needs

SVC, CFG = "/registry/services/users/", "/config/prod/app/"


def key(access: str, k: str, prefix: bool = False) -> Need:
    return Need("key", access, k, prefix)  # type: ignore[arg-type]


CASES = [
    ("GET", "/healthz", "", PUBLIC),
    ("GET", "/readyz", "", PUBLIC),
    ("GET", "/api/v1/openapi.json", "", PUBLIC),
    ("PUT", "/api/v1/kv/app/x", "", key("write", "app/x")),
    ("GET", "/api/v1/kv/app/x", "consistency=stale", key("read", "app/x")),
    ("HEAD", "/api/v1/kv/app/x", "", key("read", "app/x")),
    ("GET", "/api/v1/kv", "prefix=app/&limit=5", key("read", "app/", True)),
    ("GET", "/api/v1/kv", "", key("read", "", True)),
    ("DELETE", "/api/v1/kv/app/x", "", key("write", "app/x")),
    ("DELETE", "/api/v1/kv/app/", "prefix=true", key("write", "app/", True)),
    ("DELETE", "/api/v1/kv/app/", "prefix=yes", key("write", "app/", True)),
    ("DELETE", "/api/v1/kv/app/", "prefix=false", key("write", "app/")),
    ("DELETE", "/api/v1/kv", "prefix=app/", key("write", "app/", True)),
    ("POST", "/api/v1/compact", "", Need("cluster", "write")),
    ("POST", "/api/v1/txn", "", TXN),
    ("POST", "/api/v1/leases", "", Need("leases", "write")),
    ("POST", "/api/v1/leases/7/keepalive", "", Need("leases", "write")),
    ("GET", "/api/v1/leases/7", "", Need("leases", "read")),
    ("DELETE", "/api/v1/leases/7", "", Need("leases", "write")),
    ("GET", "/api/v1/leases/7/keepalive-stream", "", Need("leases", "write")),
    ("GET", "/api/v1/watch", "prefix=app/", key("read", "app/", True)),
    ("GET", "/api/v1/watch", "key=app/x", key("read", "app/x")),
    ("GET", "/api/v1/watch", "", key("read", "", True)),
    (
        "GET",
        "/api/v1/watch",
        "prefixes=ev/p/0/&prefixes=ev/p/1/&prefixes=ev/p/0/",
        (key("read", "ev/p/0/", True), key("read", "ev/p/1/", True)),
    ),
    (
        "GET",
        "/api/v1/watch",
        "prefixes=app/&key=other/x",
        (key("read", "app/", True), key("read", "other/x")),
    ),
    ("GET", "/api/v1/cluster", "", Need("cluster", "read")),
    ("POST", "/api/v1/cluster/members", "", Need("cluster", "write")),
    ("POST", "/api/v1/cluster/members/n2/promote", "", Need("cluster", "write")),
    ("PUT", "/api/v1/cluster/members/n2/address", "", Need("cluster", "write")),
    ("DELETE", "/api/v1/cluster/members/n2", "", Need("cluster", "write")),
    ("POST", "/api/v1/cluster/transfer", "", Need("cluster", "write")),
    ("GET", "/metrics", "", Need("cluster", "read")),
    ("GET", "/api/v1/health/checks", "", Need("cluster", "read")),
    ("PUT", "/api/v1/services/users/instances/i1", "", key("write", SVC, True)),
    ("PUT", "/api/v1/services/users/instances/i1/heartbeat", "", key("write", SVC, True)),
    ("DELETE", "/api/v1/services/users/instances/i1", "", key("write", SVC, True)),
    ("GET", "/api/v1/services", "", key("read", "/registry/services/", True)),
    ("GET", "/api/v1/services/users/instances", "healthy=true", key("read", SVC, True)),
    ("GET", "/api/v1/services/users/settings", "", key("read", SVC, True)),
    ("PUT", "/api/v1/services/users/settings", "", key("write", SVC, True)),
    ("GET", "/api/v1/services/users/watch", "", key("read", SVC, True)),
    ("PUT", "/api/v1/config/prod/app", "", key("write", CFG, True)),
    ("DELETE", "/api/v1/config/prod/app", "", key("write", CFG, True)),
    ("GET", "/api/v1/config/prod/app", "labels.zone=eu", key("read", CFG, True)),
    ("GET", "/api/v1/config/prod/app/history", "", key("read", CFG, True)),
    ("GET", "/api/v1/config/prod/app/versions/3", "", key("read", CFG, True)),
    ("GET", "/api/v1/config/prod/app/diff", "from=1&to=2", key("read", CFG, True)),
    ("POST", "/api/v1/config/prod/app/rollback", "", key("write", CFG, True)),
    ("PUT", "/api/v1/config/prod/app/beta", "", key("write", CFG, True)),
    ("POST", "/api/v1/config/prod/app/beta/promote", "", key("write", CFG, True)),
    ("DELETE", "/api/v1/config/prod/app/beta", "", key("write", CFG, True)),
    ("GET", "/api/v1/config/prod/app/watch", "", key("read", CFG, True)),
    ("GET", "/api/v1/config", "namespace=prod", key("read", "/config/prod/", True)),
    ("GET", "/api/v1/config", "", key("read", "/config/", True)),
    ("GET", "/ui/", "", PUBLIC),
    ("GET", "/ui", "", PUBLIC),
    ("GET", "/ui/services/users", "", PUBLIC),
    ("GET", "/ui/static/js/main.js", "", PUBLIC),
    ("GET", "/ui/api/cluster", "", Need("cluster", "read")),
    ("GET", "/ui/api/cluster/stream", "", Need("cluster", "read")),
    ("GET", "/ui/api/checks", "service=web", Need("cluster", "read")),
    ("POST", "/ui/", "", Need("acl", "write")),
    ("POST", "/api/v1/acl/bootstrap", "", ACL_API),
    ("GET", "/api/v1/acl/tokens", "", ACL_API),
    # Not in the table: ACL managers only (default deny), whatever it looks like.
    ("GET", "/api/v1/nothing", "", Need("acl", "write")),
    ("PATCH", "/api/v1/kv/app/x", "", Need("acl", "write")),
    ("GET", "/api/v1/cluster/", "", Need("acl", "write")),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), CASES)
def test_each_route_needs_its_permission(
    method: str, path: str, query: str, expected: object
) -> None:
    assert need_for(method, path, query.encode()) == expected


@pytest.mark.parametrize(
    "query", ["prefix=a&prefix=b", "key=a&key=b"], ids=["prefix twice", "key twice"]
)
def test_a_range_parameter_given_twice_is_refused(query: str) -> None:
    assert isinstance(need_for("GET", "/api/v1/watch", query), Refusal)
    assert isinstance(need_for("GET", "/api/v1/kv", query.replace("key", "prefix")), Refusal)


def test_txn_needs_read_for_compares_and_gets_and_write_for_puts_and_deletes() -> None:
    body = (
        b'{"compare": [{"key": "lock", "target": "value", "op": "=", "value": "free"}],'
        b' "success": [{"put": {"key": "lock", "value": "me"}},'
        b'             {"get": {"key": "cfg/", "prefix": true}}],'
        b' "failure": [{"delete": {"key": "old/", "prefix": true}}]}'
    )
    assert txn_needs(body) == (
        key("read", "lock"),
        key("write", "lock"),
        key("read", "cfg/", True),
        key("write", "old/", True),
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{",
        b'{"success": {"put": {"key": "a"}}}',
        b'{"success": [{"put": {"key": 1}}]}',
        b'{"success": [{"frobnicate": {"key": "a"}}]}',
        b'{"success": [{"put": {"key": "a"}, "get": {"key": "b"}}]}',
        # JSON with a field twice: whichever copy the API read, the guard must not judge the other.
        b'{"success": [{"put": {"key": "open/a", "key": "secret/a"}}]}',
    ],
)
def test_a_txn_body_that_cannot_be_judged_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        txn_needs(body)


def _sample(path: str) -> str:
    path = re.sub(r"\{[^}:]+:path\}", "a/b", path)
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_route_the_member_serves_is_in_the_table(tmp_path: Path) -> None:
    """Every operation of the API's own schema (the contract: api_schema.py) is listed."""
    member = Member(MemberConfig(name="n1", data_dir=tmp_path))  # built, never started
    link = LeaderLink(member)
    app = build_app(RunningMember(member, link, RegistryCache(), HealthChecker(member, link)))
    unlisted = []
    served = 0
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            served += 1
            if need_for(method.upper(), _sample(path)) == Need("acl", "write"):
                unlisted.append(f"{method.upper()} {path}")
    assert served > 40
    assert unlisted == []


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v1/watch", True),
        ("GET", "/api/v1/services/users/watch", True),
        ("GET", "/api/v1/config/prod/app/watch", True),
        ("GET", "/ui/api/cluster/stream", True),
        # Closing a keep-alive stream revokes its lease: never cut (streams.py).
        ("GET", "/api/v1/leases/7/keepalive-stream", False),
        ("GET", "/api/v1/kv/app/watch", False),
        ("POST", "/api/v1/watch", False),
    ],
)
def test_which_requests_are_watches_cut_on_a_token_change(
    method: str, path: str, expected: bool
) -> None:
    assert is_watch(method, path) is expected
