"""Which permission each request of the member's HTTP API needs: (method, path) -> need.

Theory of operation. `need_for(method, path, query)` looks the request up in one table
(`ROUTES`, in the order of docs/api.md) and returns what the guard must check:

- `PUBLIC`: no token needed (liveness and readiness probes, the API schema, the
  dashboard's pages and static files -- but not its `/ui/api/` data);
- a `Need` (policy.py): the one permission the request needs, or a tuple of them, all
  needed (a watch of a set of prefixes);
- `TXN`: a transaction, whose needs depend on its body (`txn_needs`: read for every
  compare and get, write for every put and delete, over the keys or prefixes named);
- `ACL_API`: the token and policy endpoints, which the guard answers itself;
- a `Refusal`: a request the guard cannot judge safely (a query parameter that decides
  the key range given twice, a txn body of an unknown shape), answered 400.

Anything not in the table needs `acl:write` -- a path nobody listed is open to ACL
managers only (who then get the API's own 404), never to everyone: default deny.

Rules: pure (no I/O); the table mirrors the API's routes, and tests/security checks it
against every route the app serves, so a new route cannot ship unlisted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from .policy import CONFIG_PREFIX, SERVICES_PREFIX, Need


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before any permission is checked: 400 with this message."""

    message: str


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PUBLIC: Final = _Marker("PUBLIC")
TXN: Final = _Marker("TXN")
ACL_API: Final = _Marker("ACL_API")

Decision = Need | tuple[Need, ...] | Refusal | _Marker
Query = dict[str, list[str]]
Handler = Callable[[re.Match[str], Query], Decision]

_FALSE = frozenset({"", "0", "false", "no", "off"})
ACL_PATH = "/api/v1/acl/"


def _one(query: Query, name: str, default: str | None = None) -> str | Refusal | None:
    values = query.get(name, [])
    if len(values) > 1:
        return Refusal(f"query parameter {name!r} given {len(values)} times; give it once")
    return values[0] if values else default


def _key(access: str, group: str = "key") -> Handler:
    def need(match: re.Match[str], query: Query) -> Decision:
        return Need("key", access, match[group])  # type: ignore[arg-type]

    return need


def _kv_range(access: str) -> Handler:
    """`GET`/`DELETE /api/v1/kv?prefix=P`: every key under P (all keys without P)."""

    def need(_: re.Match[str], query: Query) -> Decision:
        prefix = _one(query, "prefix", "")
        if isinstance(prefix, Refusal):
            return prefix
        return Need("key", access, prefix or "", prefix=True)  # type: ignore[arg-type]

    return need


def _kv_delete(match: re.Match[str], query: Query) -> Decision:
    flag = _one(query, "prefix", "false")
    if isinstance(flag, Refusal):
        return flag
    # Anything but a clear "false" is judged as the wider (prefix) delete.
    return Need("key", "write", match["key"], prefix=str(flag).lower() not in _FALSE)


def _watch(_: re.Match[str], query: Query) -> Decision:
    key, prefix = _one(query, "key"), _one(query, "prefix")
    for value in (key, prefix):
        if isinstance(value, Refusal):
            return value
    prefixes = query.get("prefixes", [])
    if not prefixes:
        if key is not None and prefix is None:
            return Need("key", "read", str(key))
        return Need("key", "read", str(prefix or ""), prefix=True)
    # A prefix set is judged whole: every prefix in it, and whatever else was given
    # beside it (the API refuses that mix, but nothing is let through unjudged).
    needs = [Need("key", "read", p, prefix=True) for p in dict.fromkeys(prefixes)]
    if key is not None:
        needs.append(Need("key", "read", str(key)))
    if prefix is not None:
        needs.append(Need("key", "read", str(prefix), prefix=True))
    return tuple(needs)


def _service(access: str) -> Handler:
    def need(match: re.Match[str], query: Query) -> Decision:
        return Need("key", access, f"{SERVICES_PREFIX}{match['service']}/", prefix=True)  # type: ignore[arg-type]

    return need


def _config_item(access: str) -> Handler:
    def need(match: re.Match[str], query: Query) -> Decision:
        prefix = f"{CONFIG_PREFIX}{match['ns']}/{match['name']}/"
        return Need("key", access, prefix, prefix=True)  # type: ignore[arg-type]

    return need


def _config_list(_: re.Match[str], query: Query) -> Decision:
    namespace = _one(query, "namespace")
    if isinstance(namespace, Refusal):
        return namespace
    prefix = f"{CONFIG_PREFIX}{namespace}/" if namespace else CONFIG_PREFIX
    return Need("key", "read", prefix, prefix=True)


def _fixed(decision: Decision) -> Handler:
    return lambda _match, _query: decision


_SEG = r"[^/]+"
_SVC = rf"/api/v1/services/(?P<service>{_SEG})"
_CFG = rf"/api/v1/config/(?P<ns>{_SEG})/(?P<name>{_SEG})"
_LEASE = rf"/api/v1/leases/{_SEG}"
_MEMBER = rf"/api/v1/cluster/members/{_SEG}"

CLUSTER_READ, CLUSTER_WRITE = Need("cluster", "read"), Need("cluster", "write")
LEASES_READ, LEASES_WRITE = Need("leases", "read"), Need("leases", "write")
ACL_WRITE = Need("acl", "write")

# (method, path pattern, decision): the API of docs/api.md, in its order.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/healthz", _fixed(PUBLIC)),
    ("GET", "/readyz", _fixed(PUBLIC)),
    ("GET", "/api/v1/openapi.json", _fixed(PUBLIC)),
    ("GET", "/api/v1/docs", _fixed(PUBLIC)),
    ("GET", "/docs/oauth2-redirect", _fixed(PUBLIC)),
    # keys
    ("PUT", r"/api/v1/kv/(?P<key>.*)", _key("write")),
    ("GET", r"/api/v1/kv/(?P<key>.*)", _key("read")),
    ("GET", "/api/v1/kv", _kv_range("read")),
    ("DELETE", r"/api/v1/kv/(?P<key>.*)", _kv_delete),
    ("DELETE", "/api/v1/kv", _kv_range("write")),
    ("POST", "/api/v1/compact", _fixed(CLUSTER_WRITE)),
    ("POST", "/api/v1/txn", _fixed(TXN)),
    # leases
    ("POST", "/api/v1/leases", _fixed(LEASES_WRITE)),
    ("POST", _LEASE + "/keepalive", _fixed(LEASES_WRITE)),
    ("GET", _LEASE + "/keepalive-stream", _fixed(LEASES_WRITE)),
    ("GET", _LEASE, _fixed(LEASES_READ)),
    ("DELETE", _LEASE, _fixed(LEASES_WRITE)),
    # watch
    ("GET", "/api/v1/watch", _watch),
    # cluster
    ("GET", "/api/v1/cluster", _fixed(CLUSTER_READ)),
    ("POST", "/api/v1/cluster/members", _fixed(CLUSTER_WRITE)),
    ("PUT", _MEMBER + "/address", _fixed(CLUSTER_WRITE)),
    ("POST", _MEMBER + "/promote", _fixed(CLUSTER_WRITE)),
    ("DELETE", _MEMBER, _fixed(CLUSTER_WRITE)),
    ("POST", "/api/v1/cluster/transfer", _fixed(CLUSTER_WRITE)),
    # health and metrics
    ("GET", "/metrics", _fixed(CLUSTER_READ)),
    ("GET", "/api/v1/health/checks", _fixed(CLUSTER_READ)),
    # the service registry
    ("PUT", _SVC + rf"/instances/{_SEG}", _service("write")),
    ("PUT", _SVC + rf"/instances/{_SEG}/heartbeat", _service("write")),
    ("DELETE", _SVC + rf"/instances/{_SEG}", _service("write")),
    ("GET", "/api/v1/services", _fixed(Need("key", "read", SERVICES_PREFIX, prefix=True))),
    ("GET", _SVC + "/instances", _service("read")),
    ("GET", _SVC + "/settings", _service("read")),
    ("PUT", _SVC + "/settings", _service("write")),
    ("GET", _SVC + "/watch", _service("read")),
    # the config center
    ("PUT", _CFG, _config_item("write")),
    ("DELETE", _CFG, _config_item("write")),
    ("POST", _CFG + "/rollback", _config_item("write")),
    ("PUT", _CFG + "/beta", _config_item("write")),
    ("POST", _CFG + "/beta/promote", _config_item("write")),
    ("DELETE", _CFG + "/beta", _config_item("write")),
    ("GET", "/api/v1/config", _config_list),
    ("GET", _CFG, _config_item("read")),
    ("GET", _CFG + "/history", _config_item("read")),
    ("GET", _CFG + rf"/versions/{_SEG}", _config_item("read")),
    ("GET", _CFG + "/diff", _config_item("read")),
    ("GET", _CFG + "/watch", _config_item("read")),
    # the web dashboard: its gathering endpoints read the cluster; its pages and static
    # files hold no data (every datum comes from the API, with the person's token), so a
    # browser can load the page that asks for a token (as Consul's UI does).
    ("GET", "/ui/api/.*", _fixed(CLUSTER_READ)),
    ("GET", "/ui", _fixed(PUBLIC)),
    ("GET", "/ui/.*", _fixed(PUBLIC)),
)

_COMPILED = tuple((method, re.compile(pattern), handler) for method, pattern, handler in ROUTES)


def need_for(method: str, path: str, query_string: bytes | str = b"") -> Decision:
    """What a request needs (see the module docstring). `path` is the decoded ASGI path."""
    if path.startswith(ACL_PATH) or path == ACL_PATH.rstrip("/"):
        return ACL_API
    method = "GET" if method == "HEAD" else method  # Starlette answers HEAD as GET
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    query: Query = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        query.setdefault(name, []).append(value)
    for route_method, pattern, handler in _COMPILED:
        if route_method == method and (match := pattern.fullmatch(path)) is not None:
            return handler(match, query)
    return ACL_WRITE


# Watches: long-lived responses that a token change must be able to cut (streams.py).
# Not a lease's keep-alive stream: closing it revokes the lease (see streams.py).
_WATCHES = re.compile(rf"/api/v1/watch|{_SVC}/watch|{_CFG}/watch|/ui/api/cluster/stream")


def is_watch(method: str, path: str) -> bool:
    """Whether the request opens a watch (the guard then re-checks its token while open)."""
    return method == "GET" and _WATCHES.fullmatch(path) is not None


# -- transactions -------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise ValueError(f"field {name!r} appears twice")
        seen[name] = value
    return seen


def _op_need(op: object, where: str) -> Need:
    if not isinstance(op, dict) or len(op) != 1:
        raise ValueError(
            f"{where}: an op is one of {{'put': ...}}, {{'delete': ...}}, {{'get': ...}}"
        )
    [(kind, body)] = op.items()
    if kind not in ("put", "delete", "get") or not isinstance(body, dict):
        raise ValueError(f"{where}: unknown op {kind!r}")
    key = body.get("key")
    if not isinstance(key, str):
        raise ValueError(f"{where}.{kind}.key: must be a string")
    prefix = body.get("prefix", False)
    if kind == "put":
        return Need("key", "write", key)
    return Need("key", "write" if kind == "delete" else "read", key, prefix=prefix is not False)


def txn_needs(body: bytes) -> tuple[Need, ...]:
    """Every permission a `POST /api/v1/txn` body needs, or a ValueError saying why the
    body cannot be judged (then nothing is applied: the guard answers 400)."""
    try:
        doc = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"txn body: {error}") from None
    if not isinstance(doc, dict):
        raise ValueError("txn body: must be an object")
    needs: list[Need] = []
    compares = doc.get("compare", [])
    if not isinstance(compares, list):
        raise ValueError("compare: must be a list")
    for i, compare in enumerate(compares):
        key = compare.get("key") if isinstance(compare, dict) else None
        if not isinstance(key, str):
            raise ValueError(f"compare[{i}].key: must be a string")
        needs.append(Need("key", "read", key))
    for branch in ("success", "failure"):
        ops = doc.get(branch, [])
        if not isinstance(ops, list):
            raise ValueError(f"{branch}: must be a list")
        needs.extend(_op_need(op, f"{branch}[{i}]") for i, op in enumerate(ops))
    return tuple(needs)


__all__ = [
    "ACL_API",
    "PUBLIC",
    "ROUTES",
    "TXN",
    "Decision",
    "Refusal",
    "is_watch",
    "need_for",
    "txn_needs",
]
