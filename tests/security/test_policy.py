"""Policies: parsing with messages that name the rule, and default-deny evaluation."""

from __future__ import annotations

import pytest

from shoal.security.policy import ALL_GRANTS, Grant, Need, PolicyError, allows, parse_policy


def grants(*rules: dict[str, object]) -> tuple[Grant, ...]:
    return parse_policy("p", {"rules": list(rules)}).grants


def test_nothing_is_allowed_without_a_grant() -> None:
    assert not allows((), Need("key", "read", "a"))
    assert not allows((), Need("cluster", "read"))


def test_write_implies_read_but_not_the_reverse() -> None:
    g = grants({"key": "app/", "access": "read"})
    assert allows(g, Need("key", "read", "app/x"))
    assert not allows(g, Need("key", "write", "app/x"))
    assert allows(grants({"key": "app/", "access": "write"}), Need("key", "read", "app/x"))


def test_a_prefix_need_is_covered_only_by_a_rule_over_the_whole_range() -> None:
    g = grants({"key": "app/", "access": "read"})
    assert allows(g, Need("key", "read", "app/sub/", prefix=True))
    assert not allows(g, Need("key", "read", "ap", prefix=True))  # would include "apple"
    assert not allows(g, Need("key", "read", "", prefix=True))


def test_service_config_and_jobs_rules_are_key_ranges() -> None:
    g = grants(
        {"service": "users", "access": "write"},
        {"config": "prod/", "access": "read"},
        {"jobs": True, "access": "write"},
    )
    assert allows(g, Need("key", "write", "/registry/services/users/", prefix=True))
    assert not allows(g, Need("key", "read", "/registry/services/", prefix=True))
    assert allows(g, Need("key", "read", "/config/prod/app/", prefix=True))
    assert not allows(g, Need("key", "write", "/config/prod/app/", prefix=True))
    assert allows(g, Need("key", "write", "/compute/jobs/j1"))


def test_the_reserved_acl_keys_need_acl_rights_whatever_the_key_rule() -> None:
    wide = grants({"key": "", "access": "write"})
    assert allows(wide, Need("key", "write", "/app/x"))
    assert not allows(wide, Need("key", "read", "/_shoal/acl/tokens/abc"))
    assert not allows(wide, Need("key", "read", "/_shoal/", prefix=True))
    assert not allows(wide, Need("key", "read", "", prefix=True))
    assert allows(ALL_GRANTS, Need("key", "read", "", prefix=True))


def test_whole_resources() -> None:
    g = grants({"cluster": True, "access": "read"}, {"leases": True, "access": "write"})
    assert allows(g, Need("cluster", "read"))
    assert not allows(g, Need("cluster", "write"))
    assert allows(g, Need("leases", "write"))
    assert not allows(g, Need("acl", "read"))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rules": [{"key": "a/"}]}, r"rules\[0\]\.access"),
        (
            {"rules": [{"key": "a/", "service": "b", "access": "read"}]},
            r"rules\[0\]: name exactly one",
        ),
        ({"rules": [{"cluster": "yes", "access": "read"}]}, r"rules\[0\]\.cluster: must be true"),
        ({"rules": [{"planet": "x", "access": "read"}]}, "unknown resource"),
        ({"rules": {}}, "rules: must be a list"),
        ({"rules": [], "extra": 1}, "unknown field"),
        ([], "an object"),
    ],
)
def test_bad_policies_are_refused_naming_the_rule(document: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy("p", document)


def test_builtin_policy_names_cannot_be_overwritten() -> None:
    with pytest.raises(PolicyError, match="built in"):
        parse_policy("global-management", {"rules": []})
