"""ACL policies: rules that grant read or write, and the check of a request's need.

Theory of operation
-------------------
Everything a token may touch is reduced to four kinds of permission:

- ``key``: a key range, named by a prefix (etcd's RBAC key-range permissions). The
  registry and the config center live in the store, so their rules are prefixes too: a
  ``service`` rule for ``users`` grants the keys under ``/registry/services/users``, a
  ``config`` rule for ``prod/`` the keys under ``/config/prod/``, a ``jobs`` rule the keys
  under ``/compute/``. One check therefore covers the dedicated API and the raw KV API
  alike: a token cannot reach through ``/api/v1/kv`` what ``/api/v1/services`` refuses it.
- ``leases``: grant, renew, revoke, inspect leases.
- ``cluster``: membership, leadership transfer, compaction, status, metrics.
- ``acl``: tokens and policies -- and the store's reserved ``/_shoal/acl/`` keys, which a
  ``key`` rule alone never reaches, however wide its prefix.

A request needs one permission (a `Need`): a kind, an access level and, for keys, a key
or a whole prefix. A grant covers a need when it is the same kind, at least the access
(``write`` implies ``read``) and, for keys, its prefix is a prefix of the key or of the
prefix asked for -- so a watch or a list of ``/app/`` needs a rule covering all of
``/app/``, not just some key in it. Nothing is allowed that no grant covers (default
deny, as in Consul).

Rules: pure (no I/O, no clock); a policy is validated when parsed, with a message naming
the rule at fault; evaluation never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["key", "leases", "cluster", "acl"]
Access = Literal["read", "write"]

ACL_PREFIX = "/_shoal/acl/"
SERVICES_PREFIX = "/registry/services/"
CONFIG_PREFIX = "/config/"
JOBS_PREFIX = "/compute/"

GLOBAL_MANAGEMENT = "global-management"
POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_RULES = 256
MAX_PREFIX = 1536  # a key's own limit

_LEVEL = {"read": 1, "write": 2}
# A rule names one resource: a prefix for these, `true` for the others.
_PREFIXED = {"key": "", "service": SERVICES_PREFIX, "config": CONFIG_PREFIX}
_WHOLE: dict[str, tuple[Kind, str]] = {
    "jobs": ("key", JOBS_PREFIX),
    "leases": ("leases", ""),
    "cluster": ("cluster", ""),
    "acl": ("acl", ""),
}


class PolicyError(ValueError):
    """A policy document that is malformed; the message names the rule and field."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One permission a policy gives: `kind` at `access`, on keys under `prefix`."""

    kind: Kind
    access: Access
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class Need:
    """The one permission a request needs. `prefix` True: all keys under `key`."""

    kind: Kind
    access: Access
    key: str = ""
    prefix: bool = False

    def describe(self) -> str:
        """As an error names it: `key:write:/app/x`, `key:read:/app/*`, `cluster:write`."""
        if self.kind != "key":
            return f"{self.kind}:{self.access}"
        return f"key:{self.access}:{self.key}{'*' if self.prefix else ''}"


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    grants: tuple[Grant, ...]
    description: str = ""
    rules: tuple[Mapping[str, Any], ...] = ()  # as written, for reading back


ALL_GRANTS = (
    Grant("key", "write", ""),
    Grant("leases", "write"),
    Grant("cluster", "write"),
    Grant("acl", "write"),
)
BUILTIN = {GLOBAL_MANAGEMENT: Policy(GLOBAL_MANAGEMENT, ALL_GRANTS, "every permission")}


def parse_rule(rule: object, where: str) -> Grant:
    if not isinstance(rule, dict):
        raise PolicyError(f"{where}: a rule is an object like {{'key': 'app/', 'access': 'read'}}")
    access = rule.get("access")
    if access not in _LEVEL:
        raise PolicyError(f"{where}.access: must be 'read' or 'write', got {access!r}")
    resources = [name for name in rule if name != "access"]
    if len(resources) != 1:
        known = ", ".join([*_PREFIXED, *_WHOLE])
        raise PolicyError(f"{where}: name exactly one resource ({known}), got {resources}")
    [resource] = resources
    value = rule[resource]
    if resource in _PREFIXED:
        if not isinstance(value, str) or len(value) > MAX_PREFIX:
            raise PolicyError(f"{where}.{resource}: must be a prefix string (up to 1536 chars)")
        return Grant("key", access, _PREFIXED[resource] + value)
    if resource in _WHOLE:
        if value is not True:
            raise PolicyError(f"{where}.{resource}: must be true")
        kind, prefix = _WHOLE[resource]
        return Grant(kind, access, prefix)
    raise PolicyError(f"{where}: unknown resource {resource!r}")


def parse_policy(name: str, document: object) -> Policy:
    """`{"rules": [...], "description"?}` -> a `Policy`, or a `PolicyError`."""
    if not POLICY_NAME.fullmatch(name):
        raise PolicyError(f"policy name {name!r}: 1-64 letters, digits or ._- (not leading)")
    if name in BUILTIN:
        raise PolicyError(f"policy name {name!r} is built in and cannot be changed")
    if not isinstance(document, dict):
        raise PolicyError("a policy is an object with 'rules'")
    unknown = sorted(set(document) - {"rules", "description"})
    if unknown:
        raise PolicyError(f"unknown field(s) {', '.join(unknown)}; known: rules, description")
    rules = document.get("rules")
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise PolicyError(f"rules: must be a list of up to {MAX_RULES} rules")
    description = document.get("description", "")
    if not isinstance(description, str) or len(description) > 1024:
        raise PolicyError("description: must be a string of up to 1024 characters")
    grants = tuple(parse_rule(rule, f"rules[{i}]") for i, rule in enumerate(rules))
    return Policy(name, grants, description, tuple(rules))


def _touches_acl_keys(need: Need) -> bool:
    if need.key.startswith(ACL_PREFIX):
        return True
    return need.prefix and ACL_PREFIX.startswith(need.key)


def _covers(grant: Grant, kind: Kind, access: Access, key: str) -> bool:
    if grant.kind != kind or _LEVEL[grant.access] < _LEVEL[access]:
        return False
    return kind != "key" or key.startswith(grant.prefix)


def allows(grants: Iterable[Grant], need: Need) -> bool:
    """Whether `grants` cover `need` (see the module docstring). Default deny."""
    grants = tuple(grants)
    # The reserved keys hold token hashes and policies: only an ACL manager reaches them.
    reserved = need.kind == "key" and _touches_acl_keys(need)
    if reserved and not any(_covers(g, "acl", need.access, "") for g in grants):
        return False
    return any(_covers(g, need.kind, need.access, need.key) for g in grants)


__all__ = [
    "ACL_PREFIX",
    "ALL_GRANTS",
    "BUILTIN",
    "GLOBAL_MANAGEMENT",
    "Grant",
    "Need",
    "Policy",
    "PolicyError",
    "allows",
    "parse_policy",
    "parse_rule",
]
