"""ACL tokens and policies in the store: their key layout, records and lookup.

Theory of operation
-------------------
A token is a 256-bit random secret (`new_secret`), shown once when it is made. The store
keeps only its SHA-256 (`/_shoal/acl/tokens/<hex sha256>`), with an accessor id (a
public name for the token, used to list and delete it), its policy names and a
description. Secrets are random, not chosen by people, so one unsalted hash is enough:
nobody can guess a preimage, and a stolen store gives no usable token. Policies are
`/_shoal/acl/policies/<name>`; `/_shoal/acl/bootstrap` records that the one bootstrap
token was made.

Members call each other (health writes to the leader, address records) with a member
secret kept at `/_shoal/acl/member-secret`, made at bootstrap. It is stored in clear
because every member must be able to send it; it sits under the reserved prefix that
only an ACL manager can read, and anyone who can read a member's data directory could
read the whole store anyway.

`resolve(secret, get)` finds the identity a secret stands for through `get` (a read of
the local store): a dict lookup by hash, then a constant-time comparison of the stored
hash with the computed one (`hmac.compare_digest`), so no answer's timing depends on how
much of a guess was right. Parsed records are cached by key and mod revision.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..kv import KeyValue
from .policy import ACL_PREFIX, BUILTIN, Grant, Policy, PolicyError, parse_policy

TOKENS_PREFIX = ACL_PREFIX + "tokens/"
POLICIES_PREFIX = ACL_PREFIX + "policies/"
BOOTSTRAP_KEY = ACL_PREFIX + "bootstrap"
MEMBER_SECRET_KEY = ACL_PREFIX + "member-secret"

# What members may do with the member secret: health writes and address records.
MEMBER_GRANTS = (
    Grant("key", "write", "/registry/"),
    Grant("cluster", "write"),
    Grant("leases", "write"),
)

Lookup = Callable[[bytes], KeyValue | None]


def new_secret() -> str:
    return secrets.token_hex(32)  # 256 bits


def new_accessor() -> str:
    return secrets.token_hex(8)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_key(secret_digest: str) -> bytes:
    return (TOKENS_PREFIX + secret_digest).encode()


def policy_key(name: str) -> bytes:
    return (POLICIES_PREFIX + name).encode()


def token_record(secret: str, accessor: str, policies: list[str], description: str) -> bytes:
    record = {
        "hash": digest(secret),
        "accessor": accessor,
        "policies": policies,
        "description": description,
    }
    return json.dumps(record, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: the token's accessor (or `member`), its policies and grants."""

    accessor: str
    policies: tuple[str, ...]
    grants: tuple[Grant, ...]
    description: str = ""


class TokenStore:
    """Resolves secrets to identities by reading the local store through `get`."""

    def __init__(self, get: Lookup) -> None:
        self._get = get
        self._cache: dict[bytes, tuple[int, Any]] = {}

    def _parsed(self, key: bytes, parse: Callable[[bytes], Any]) -> Any:
        kv = self._get(key)
        if kv is None:
            self._cache.pop(key, None)
            return None
        cached = self._cache.get(key)
        if cached is not None and cached[0] == kv.mod_revision:
            return cached[1]
        value = parse(kv.value)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (kv.mod_revision, value)
        return value

    def policy(self, name: str) -> Policy | None:
        if name in BUILTIN:
            return BUILTIN[name]

        def parse(raw: bytes) -> Policy | None:
            try:
                return parse_policy(name, json.loads(raw))
            except (ValueError, PolicyError):
                return None  # a damaged record grants nothing

        policy: Policy | None = self._parsed(policy_key(name), parse)
        return policy

    def resolve(self, secret: str) -> Identity | None:
        computed = digest(secret)
        member_secret = self._get(MEMBER_SECRET_KEY.encode())
        if member_secret is not None and hmac.compare_digest(
            digest(member_secret.value.decode()), computed
        ):
            return Identity("member", ("member",), MEMBER_GRANTS)
        record = self._parsed(token_key(computed), _json_object)
        if record is None or not hmac.compare_digest(str(record.get("hash", "")), computed):
            return None
        names = tuple(str(n) for n in record.get("policies", ()))
        grants: list[Grant] = []
        for name in names:
            policy = self.policy(name)
            if policy is not None:  # a deleted policy simply grants nothing any more
                grants.extend(policy.grants)
        return Identity(
            str(record.get("accessor")), names, tuple(grants), record.get("description", "")
        )

    def member_secret(self) -> str | None:
        kv = self._get(MEMBER_SECRET_KEY.encode())
        return kv.value.decode() if kv is not None else None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


__all__ = [
    "BOOTSTRAP_KEY",
    "MEMBER_SECRET_KEY",
    "POLICIES_PREFIX",
    "TOKENS_PREFIX",
    "Identity",
    "TokenStore",
    "digest",
    "new_accessor",
    "new_secret",
    "policy_key",
    "token_key",
    "token_record",
]
