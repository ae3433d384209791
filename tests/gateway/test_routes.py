"""The route table's rules, by direct calls: validation names the field, matching takes
the longest whole-segment prefix, host routes win, rewrites build the upstream path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.gateway import GatewayOptions, RouteError, parse_routes
from shoal.gateway.routes import parse_size
from shoal.service import ClientPolicy


def table(*routes: dict[str, Any], **extra: Any) -> Any:
    return parse_routes({"routes": list(routes), **extra})


def r(prefix: str, service: str = "svc", **kw: Any) -> dict[str, Any]:
    return {"prefix": prefix, "service": service, **kw}


def matched(t: Any, path: bytes, host: bytes = b"") -> tuple[str, bytes] | None:
    m = t.match(host, path)
    return None if m is None else (m.route.name, m.target)


def test_longest_prefix_on_segment_boundaries() -> None:
    t = table(r("/api", name="api"), r("/api/users/", name="users"), r("/", name="root"))
    assert matched(t, b"/api/users/7") == ("users", b"/api/users/7")
    assert matched(t, b"/api/users") == ("users", b"/api/users")
    assert matched(t, b"/api/usersx") == ("api", b"/api/usersx")
    assert matched(t, b"/apix") == ("root", b"/apix")
    assert matched(t, b"/") == ("root", b"/")


def test_no_match_without_a_root_route() -> None:
    t = table(r("/api"))
    assert matched(t, b"/other") is None
    assert matched(t, b"/") is None


def test_strip_and_rewrite_prefix() -> None:
    t = table(
        r("/api", strip_prefix=True, name="strip"),
        r("/v1", rewrite_prefix="/internal/v1", name="rewrite"),
        r("/slash", rewrite_prefix="/to/", name="slash"),
    )
    assert matched(t, b"/api/users/7") == ("strip", b"/users/7")
    assert matched(t, b"/api") == ("strip", b"/")
    assert matched(t, b"/v1/x") == ("rewrite", b"/internal/v1/x")
    assert matched(t, b"/v1") == ("rewrite", b"/internal/v1")
    assert matched(t, b"/slash/x") == ("slash", b"/to/x")


def test_host_routes_win_over_hostless_ones() -> None:
    t = table(
        r("/", host="api.example.com", name="exact"),
        r("/", host="*.example.com", name="wild"),
        r("/", host="*.eu.example.com", name="wild-eu"),
        r("/", name="any"),
    )
    assert matched(t, b"/x", b"API.example.com:8080")[0] == "exact"  # type: ignore[index]
    assert matched(t, b"/x", b"shop.example.com")[0] == "wild"  # type: ignore[index]
    assert matched(t, b"/x", b"a.eu.example.com")[0] == "wild-eu"  # type: ignore[index]
    assert matched(t, b"/x", b"example.org")[0] == "any"  # type: ignore[index]
    assert matched(t, b"/x", b"")[0] == "any"  # type: ignore[index]


def test_a_host_without_a_matching_prefix_falls_back() -> None:
    t = table(r("/admin", host="a.example.com", name="admin"), r("/", name="any"))
    assert matched(t, b"/public", b"a.example.com")[0] == "any"  # type: ignore[index]


def test_defaults_layer_under_each_route() -> None:
    t = table(
        r("/a", policy={"timeout": "2s"}, name="a"),
        r("/b", name="b", max_body="1KiB"),
        defaults={"policy": {"balancer": "round_robin", "timeout": "9s"}, "max_body": "2MB"},
    )
    a, b = t.routes
    assert (a.policy.balancer, a.policy.timeout, a.max_body) == ("round_robin", 2.0, 2_000_000)
    assert (b.policy.balancer, b.policy.timeout, b.max_body) == ("round_robin", 9.0, 1024)


def test_a_base_policy_sits_under_the_defaults_and_each_route() -> None:
    base = ClientPolicy(balancer="round_robin", timeout=4.0, max_attempts=2)
    data = {
        "defaults": {"policy": {"timeout": "9s"}},
        "routes": [r("/a", policy={"max_attempts": 5}, name="a"), r("/b", name="b")],
    }
    a, b = parse_routes(data, base).routes
    assert (a.policy.balancer, a.policy.timeout, a.policy.max_attempts) == ("round_robin", 9, 5)
    assert (b.policy.balancer, b.policy.timeout, b.policy.max_attempts) == ("round_robin", 9, 2)


def test_a_bad_gateway_policy_is_refused_with_its_key() -> None:
    with pytest.raises(ValueError, match=r"policy: .*balancer"):
        GatewayOptions(routes_file="r.yaml", policy='{"balancer": "fastest"}')
    with pytest.raises(ValueError, match="policy: "):
        GatewayOptions(routes_file="r.yaml", policy="{not json")
    ok = GatewayOptions(routes_file="r.yaml", policy='{"timeout": "2s"}').base_policy()
    assert ok is not None and ok.timeout == 2.0


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"routes": []}, "routes"),
        ({"routes": [r("api")]}, "routes[0].prefix"),
        ({"routes": [{"prefix": "/"}]}, "routes[0].service"),
        ({"routes": [r("/", service="bad name")]}, "routes[0].service"),
        ({"routes": [r("/", colour="red")]}, "routes[0].colour"),
        ({"routes": [r("/", policy={"balancer": "fastest"})]}, "routes[0].policy"),
        ({"routes": [r("/", rate_limit={"rate": 0})]}, "routes[0].rate_limit.rate"),
        ({"routes": [r("/", rate_limit={"rate": 1, "key": "ip"})]}, "routes[0].rate_limit.key"),
        ({"routes": [r("/", max_body="lots")]}, "routes[0].max_body"),
        ({"routes": [r("/", idle_timeout="soon")]}, "routes[0].idle_timeout"),
        ({"routes": [r("/", host="bad host")]}, "routes[0].host"),
        (
            {"routes": [r("/", request_headers={"set": {"content-length": "1"}})]},
            "routes[0].request_headers.set",
        ),
        (
            {"routes": [r("/", response_headers={"set": {"x-a": "line\nbreak"}})]},
            "routes[0].response_headers.set.x-a",
        ),
        ({"routes": [r("/", strip_prefix=True, rewrite_prefix="/x")]}, "routes[0]"),
        ({"routes": [r("/a", name="x"), r("/b", name="x")]}, "routes[1].name"),
        ({"routes": [r("/a"), r("/a/")]}, "both match"),
        ({"routes": [r("/")], "extra": 1}, "extra"),
        ({"routes": [r("/")], "defaults": {"prefix": "/"}}, "defaults.prefix"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], where: str) -> None:
    with pytest.raises(RouteError) as error:
        parse_routes(data)
    assert where in str(error.value)


def test_sizes() -> None:
    assert parse_size(10) == 10
    assert parse_size("10MB") == 10_000_000
    assert parse_size("1MiB") == 1_048_576
    assert parse_size("512k") == 512_000
    with pytest.raises(RouteError):
        parse_size("-1")


segment = st.text(alphabet="abcxyz", min_size=1, max_size=3)


@given(
    prefixes=st.lists(st.lists(segment, min_size=1, max_size=3), min_size=1, max_size=6),
    path=st.lists(segment, min_size=0, max_size=5),
)
def test_match_is_the_longest_whole_segment_prefix(
    prefixes: list[list[str]], path: list[str]
) -> None:
    names = {"/" + "/".join(p) for p in prefixes}
    t = table(*(r(p, name=p) for p in sorted(names)))
    request = "/" + "/".join(path)
    found = t.match(b"", request.encode())
    # The naive answer: every route whose segments begin the path's, longest first.
    candidates = [p for p in names if path[: len(p.split("/")) - 1] == p.split("/")[1:]]
    if not candidates:
        assert found is None
    else:
        assert found is not None
        assert found.route.name == max(candidates, key=len)
