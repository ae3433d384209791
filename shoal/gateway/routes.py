"""The route table: which service a request goes to, and what the gateway does on the way.

    table = parse_routes(yaml.safe_load(text))     # RouteError names the bad field
    match = table.match(b"api.example.com", b"/users/7")
    match.route.service, match.target              # "users", b"/7" (prefix stripped)

A route table is a list of routes, each matching a path prefix and optionally a host:

    defaults:                    # merged into every route (a route's own keys win)
      policy: {timeout: 10s}
      max_body: 10MB
    routes:
      - prefix: /api/users       # required; matched on whole path segments
        host: api.example.com    # optional: exact, or *.example.com for any subdomain
        service: users           # the registry's service name
        strip_prefix: true       # /api/users/7 -> /7 (or rewrite_prefix: /v1)
        request_headers: {set: {x-team: blog}, remove: [cookie]}
        response_headers: {set: {cache-control: no-store}}
        policy: {balancer: round_robin, timeout: 2s, attempt_timeout: 500ms}  # ClientPolicy
        rate_limit: {rate: 100, burst: 200, key: client}   # or key: header:x-api-key
        max_body: 1MB
        idle_timeout: 60s        # between two reads of a streamed response

Theory of operation. Matching must cost a few dictionary lookups, whatever the number
of routes: the table is compiled into one index per host (exact hosts, then wildcard
suffixes, then routes without a host), each a dict from normalised prefix to route.
A path is looked up whole, then cut back one segment at a time (`/a/b/c`, `/a/b`,
`/a`, `/`), so the longest matching prefix wins and `/api` never matches `/apis`.
Host-specific routes win over host-less ones; hosts compare without port, lower-case.

Rules kept: a table is validated whole before it is used (every error names its place,
`routes[2].rate_limit.rate`), so a bad reload never half-applies; values are frozen;
no I/O here (the file and the config center are the server's to read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..registry import RegistryError, parse_duration, service_prefix
from ..service.policy import ClientPolicy, PolicyError

__all__ = [
    "HeaderRewrite",
    "Match",
    "RateLimitSpec",
    "Route",
    "RouteError",
    "RouteTable",
    "parse_routes",
    "parse_size",
]


class RouteError(ValueError):
    """A route table that cannot be used; the message starts with the bad field's place."""


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 header field names
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)

# Headers a rewrite may not touch: they frame the message or carry the gateway's own
# forwarding and tracing, which it sets after the rewrites.
_RESERVED = frozenset(
    {
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    }
)

DEFAULT_MAX_BODY = 10 * 1000**2
DEFAULT_IDLE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class HeaderRewrite:
    """Headers to set (replacing any the message has) and to remove, lower-case names."""

    set: tuple[tuple[str, str], ...] = ()
    remove: frozenset[str] = frozenset()

    @property
    def names(self) -> frozenset[str]:
        """Every header name this rewrite drops from the message before adding `set`."""
        return self.remove | {name for name, _ in self.set}

    def lines(self) -> bytes:
        """The `set` headers as wire bytes (`Name: value\\r\\n` each)."""
        return b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in self.set)


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """A token bucket per client key: `rate` per second, bursts of up to `burst`."""

    rate: float
    burst: float
    key: str = "client"  # "client" (the peer address) or "header:<name>"

    @property
    def header(self) -> str | None:
        """The lower-case header that keys the buckets, or None for the client address."""
        return self.key.removeprefix("header:") if self.key.startswith("header:") else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    name: str
    prefix: str  # normalised: no trailing slash except "/" itself
    service: str
    host: str | None = None  # lower-case; "*.example.com" matches any subdomain
    strip_prefix: bool = False
    rewrite_prefix: str | None = None
    request_headers: HeaderRewrite = HeaderRewrite()
    response_headers: HeaderRewrite = HeaderRewrite()
    policy: ClientPolicy = field(default_factory=ClientPolicy)
    rate_limit: RateLimitSpec | None = None
    max_body: int = DEFAULT_MAX_BODY
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def target(self, path: bytes) -> bytes:
        """The path sent upstream for a request `path` this route matched."""
        replacement = self.rewrite_prefix
        if replacement is None:
            if not self.strip_prefix or self.prefix == "/":
                return path
            replacement = ""
        rest = path[len(self.prefix) :] if self.prefix != "/" else path
        if not replacement:
            return rest if rest.startswith(b"/") else b"/" + rest
        if replacement.endswith("/") and rest.startswith(b"/"):
            rest = rest[1:]
        return replacement.encode() + rest

    def describe(self) -> dict[str, Any]:
        """The route as plain data (the admin endpoint's /routes)."""
        return {
            "name": self.name,
            "prefix": self.prefix,
            "host": self.host,
            "service": self.service,
            "strip_prefix": self.strip_prefix,
            "rewrite_prefix": self.rewrite_prefix,
            "balancer": self.policy.balancer,
            "timeout": self.policy.timeout,
            "attempt_timeout": self.policy.attempt_timeout,
            "max_attempts": self.policy.max_attempts,
            "rate_limit": None
            if self.rate_limit is None
            else {
                "rate": self.rate_limit.rate,
                "burst": self.rate_limit.burst,
                "key": self.rate_limit.key,
            },
            "max_body": self.max_body,
        }


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    target: bytes  # the path (without the query) to send upstream


class _PrefixIndex:
    """Routes of one host by normalised prefix; longest prefix on segment boundaries."""

    __slots__ = ("_by_prefix",)

    def __init__(self, routes: Sequence[Route]) -> None:
        self._by_prefix: dict[bytes, Route] = {r.prefix.encode(): r for r in routes}

    def find(self, path: bytes) -> Route | None:
        by_prefix = self._by_prefix
        route = by_prefix.get(path)
        if route is not None:
            return route
        end = len(path)
        while end > 0:
            end = path.rfind(b"/", 0, end)
            if end <= 0:
                break
            route = by_prefix.get(path[:end])
            if route is not None:
                return route
        return by_prefix.get(b"/")


class RouteTable:
    """Compiled routes; `match` is the hot path (see the module docstring)."""

    __slots__ = ("_any", "_exact", "_wild", "routes")

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        exact: dict[str, list[Route]] = {}
        wild: dict[str, list[Route]] = {}
        anyhost: list[Route] = []
        seen: dict[tuple[str | None, str], str] = {}
        for route in self.routes:
            where = (route.host, route.prefix)
            if where in seen:
                raise RouteError(
                    f"routes {seen[where]!r} and {route.name!r} both match "
                    f"host {route.host or '*'} prefix {route.prefix}"
                )
            seen[where] = route.name
            if route.host is None:
                anyhost.append(route)
            elif route.host.startswith("*."):
                wild.setdefault(route.host[1:], []).append(route)  # ".example.com"
            else:
                exact.setdefault(route.host, []).append(route)
        self._exact = {h.encode(): _PrefixIndex(rs) for h, rs in exact.items()}
        # Longest suffix first, so *.a.example.com wins over *.example.com.
        self._wild = sorted(
            ((h.encode(), _PrefixIndex(rs)) for h, rs in wild.items()),
            key=lambda item: -len(item[0]),
        )
        self._any = _PrefixIndex(anyhost)

    def match(self, host: bytes, path: bytes) -> Match | None:
        """The route for a request to `host` (the Host header as sent) and `path`."""
        route: Route | None = None
        if host and (self._exact or self._wild):
            name = _host_name(host)
            index = self._exact.get(name)
            if index is not None:
                route = index.find(path)
            if route is None:
                for suffix, index in self._wild:
                    if name.endswith(suffix):
                        route = index.find(path)
                        if route is not None:
                            break
        if route is None:
            route = self._any.find(path)
            if route is None:
                return None
        return Match(route, route.target(path))

    @property
    def services(self) -> frozenset[str]:
        return frozenset(r.service for r in self.routes)


def _host_name(host: bytes) -> bytes:
    """`Host: API.example.com:8080` -> b"api.example.com" (IPv6 literals keep brackets)."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[: end + 1].lower() if end > 0 else host.lower()
    colon = host.rfind(b":")
    return (host[:colon] if colon >= 0 else host).lower()


# --------------------------------------------------------------------------- parsing


_ROUTE_KEYS = frozenset(
    {
        "name",
        "prefix",
        "host",
        "service",
        "strip_prefix",
        "rewrite_prefix",
        "request_headers",
        "response_headers",
        "policy",
        "rate_limit",
        "max_body",
        "idle_timeout",
    }
)
_DEFAULT_KEYS = _ROUTE_KEYS - {"name", "prefix", "host", "service"}


def parse_routes(data: Any, base: ClientPolicy | None = None) -> RouteTable:
    """The table a parsed YAML/JSON document describes; RouteError says what is wrong.

    `base` is the policy every route starts from (the gateway's `--policy`), under the
    table's `defaults.policy` and each route's own."""
    if not isinstance(data, Mapping):
        raise RouteError(f"a route table is a mapping with 'routes', got {type(data).__name__}")
    unknown = sorted(set(data) - {"routes", "defaults"})
    if unknown:
        raise RouteError(f"{unknown[0]}: unknown key (known: defaults, routes)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise RouteError("defaults: must be a mapping")
    _only(defaults, "defaults", _DEFAULT_KEYS)
    items = data.get("routes")
    if not isinstance(items, list) or not items:
        raise RouteError("routes: must be a non-empty list")
    routes: list[Route] = []
    names: set[str] = set()
    places: dict[tuple[str | None, str], int] = {}
    for i, item in enumerate(items):
        where = f"routes[{i}]"
        if not isinstance(item, Mapping):
            raise RouteError(f"{where}: must be a mapping, got {item!r}")
        route = _route(where, {**defaults, **item}, defaults, base or ClientPolicy())
        place = (route.host, route.prefix)
        if place in places:
            raise RouteError(
                f"{where}: both match host {route.host or '*'} prefix {route.prefix} "
                f"(as routes[{places[place]}] does)"
            )
        places[place] = i
        if route.name in names:
            raise RouteError(f"{where}.name: {route.name!r} is used by another route")
        names.add(route.name)
        routes.append(route)
    return RouteTable(routes)


def _route(
    where: str, item: Mapping[str, Any], defaults: Mapping[str, Any], base: ClientPolicy
) -> Route:
    _only(item, where, _ROUTE_KEYS)
    prefix = _prefix(item.get("prefix"), f"{where}.prefix")
    service = item.get("service")
    if not isinstance(service, str):
        raise RouteError(f"{where}.service: required, the name of a registered service")
    try:
        service_prefix(service)
    except RegistryError as error:
        raise RouteError(f"{where}.service: {error}") from None
    host = item.get("host")
    if host is not None:
        if not isinstance(host, str) or not _HOST.match(host.lower()):
            raise RouteError(f"{where}.host: expected a host name or *.domain, got {host!r}")
        host = host.lower()
    name = item.get("name", f"{host + ':' if host else ''}{prefix}")
    if not isinstance(name, str) or not name:
        raise RouteError(f"{where}.name: must be a non-empty string")
    strip = item.get("strip_prefix", False)
    if not isinstance(strip, bool):
        raise RouteError(f"{where}.strip_prefix: must be true or false, got {strip!r}")
    rewrite = item.get("rewrite_prefix")
    if rewrite is not None:
        if not isinstance(rewrite, str) or not rewrite.startswith("/") or not rewrite.isascii():
            raise RouteError(f"{where}.rewrite_prefix: must be a path starting with /")
        if strip:
            raise RouteError(f"{where}: strip_prefix and rewrite_prefix exclude each other")
    # A route's policy is layered over the defaults' policy, not instead of it.
    policy = base
    for label, source in (("defaults", defaults), (where, item)):
        raw = source.get("policy")
        if raw is None or (source is item and raw is defaults.get("policy")):
            continue
        try:
            policy = ClientPolicy.from_mapping(raw, policy)
        except PolicyError as error:
            raise RouteError(f"{label}.policy: {error}") from None
    limit = item.get("rate_limit")
    return Route(
        name=name,
        prefix=prefix,
        service=service,
        host=host,
        strip_prefix=strip,
        rewrite_prefix=rewrite,
        request_headers=_rewrite(item.get("request_headers"), f"{where}.request_headers"),
        response_headers=_rewrite(item.get("response_headers"), f"{where}.response_headers"),
        policy=policy,
        rate_limit=None if limit is None else _rate_limit(limit, f"{where}.rate_limit"),
        max_body=parse_size(item.get("max_body", DEFAULT_MAX_BODY), f"{where}.max_body"),
        idle_timeout=_duration(
            item.get("idle_timeout", DEFAULT_IDLE_TIMEOUT), f"{where}.idle_timeout"
        ),
    )


def _prefix(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise RouteError(f"{where}: required, a path starting with / (got {value!r})")
    if not value.isascii() or any(c in value for c in " ?#\t\r\n"):
        raise RouteError(f"{where}: must be a plain ASCII path without ?, # or spaces")
    normalised = value.rstrip("/") or "/"
    if "//" in normalised:
        raise RouteError(f"{where}: empty path segment in {value!r}")
    return normalised


def _rewrite(value: Any, where: str) -> HeaderRewrite:
    if value is None:
        return HeaderRewrite()
    if not isinstance(value, Mapping):
        raise RouteError(f"{where}: must be a mapping with set and/or remove")
    _only(value, where, frozenset({"set", "remove"}))
    pairs: list[tuple[str, str]] = []
    raw_set = value.get("set") or {}
    if not isinstance(raw_set, Mapping):
        raise RouteError(f"{where}.set: must be a mapping of header name to value")
    for name, text in raw_set.items():
        lname = _header_name(name, f"{where}.set")
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            raise RouteError(f"{where}.set.{name}: must be a string, got {text!r}")
        text = str(text)
        if any(c in text for c in "\r\n\0") or not all(ord(c) < 256 for c in text):
            raise RouteError(f"{where}.set.{name}: must be one line of latin-1 text")
        pairs.append((lname, text))
    raw_remove = value.get("remove") or []
    if not isinstance(raw_remove, list):
        raise RouteError(f"{where}.remove: must be a list of header names")
    remove = frozenset(_header_name(n, f"{where}.remove") for n in raw_remove)
    return HeaderRewrite(tuple(pairs), remove)


def _header_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise RouteError(f"{where}: {name!r} is not a header name")
    lname = name.lower()
    if lname in _RESERVED:
        raise RouteError(f"{where}: {name} frames the message and cannot be rewritten")
    return lname


def _rate_limit(value: Any, where: str) -> RateLimitSpec:
    if not isinstance(value, Mapping):
        raise RouteError(f"{where}: must be a mapping with rate, burst and key")
    _only(value, where, frozenset({"rate", "burst", "key"}))
    rate = _positive(value.get("rate"), f"{where}.rate")
    burst = _positive(value.get("burst", max(1.0, rate)), f"{where}.burst")
    if burst < 1:
        raise RouteError(f"{where}.burst: must be at least 1 (one request), got {burst!r}")
    key = value.get("key", "client")
    if not isinstance(key, str) or not (
        key == "client" or (key.startswith("header:") and _TOKEN.match(key[7:]))
    ):
        raise RouteError(f"{where}.key: 'client' or 'header:<name>', got {key!r}")
    return RateLimitSpec(rate, burst, key.lower())


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise RouteError(f"{where}: must be a positive number, got {value!r}")
    return float(value)


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration(value, where)
    except RegistryError as error:
        raise RouteError(str(error)) from None


def parse_size(value: Any, where: str = "size") -> int:
    """Bytes from 1048576, "10MB", "512k" or "1GiB" (k/m/g are 1000s, ki/mi/gi 1024s)."""
    if isinstance(value, bool):
        raise RouteError(f"{where}: expected a size like 10MB, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        unit = (match.group(2) or "").lower().rstrip("b")
        base = 1024 if unit.endswith("i") else 1000
        power = {"": 0, "k": 1, "m": 2, "g": 3}[unit.rstrip("i")]
        size = int(float(match.group(1)) * base**power)
    else:
        raise RouteError(f"{where}: expected a size like 10MB, got {value!r}")
    if size < 0:
        raise RouteError(f"{where}: must not be negative, got {value!r}")
    return size


def _only(section: Mapping[str, Any], where: str, allowed: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in set(section) - allowed)
    if unknown:
        raise RouteError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(allowed))})")
