"""The manifest of `shoal up` (`shoal.yaml`), read and checked before anything starts.

    name: blog
    control_plane:               # default: an embedded single-member shoal server
      port: 7700                 # its client port (the peer port is the next one)
    # endpoints: http://10.0.0.1:7700      # ...or use a running control plane instead
    config:                      # published at start when the content differs
      blog/articles: {file: config/articles.yaml}
    services:
      users:
        command: python -m examples.blog.users --port {port}
        replicas: 2
        env: {USERS_DB: "{data}/users.db"}
      articles:
        command: uvicorn examples.blog.articles:app --port {port}
        replicas: 2
    gateway:                     # optional: `shoal gateway` in front of the services
      port: 8080
      routes:                    # inline; or routes_file: routes.yaml; or routes_item: NS/NAME
        - {prefix: /users, service: users}
      policy: {balancer: round_robin}   # a ClientPolicy every route starts from
      workers: 1                 # processes on the port, each supervised (`gateway-1`, ...)
    security:                    # optional: TLS and ACLs (docs/security.md); off by default
      tls:                       # PEM files, relative to the manifest's directory
        ca: certs/ca.pem
        cert: certs/member.pem   # the embedded control plane's certificate and key
        key: certs/member-key.pem
        client_cert: certs/client.pem      # what services and the gateway present
        client_key: certs/client-key.pem   # (default: cert and key)
      token: ${SHOAL_TOKEN}      # ACLs on; the management token (32+ characters)

In `command` and `env`, `{port}` is the replica's own free port, `{replica}` its number
(1, 2, ...), `{service}` the service's name, `{data}` the application's data directory
(`.shoal/` beside the manifest) and `{root}` the manifest's directory. Each replica also
gets `SHOAL_ENDPOINTS`, `SHOAL_INSTANCE_ID` (`{service}-{replica}`) and `PORT` in its
environment. Commands run from the manifest's directory. Every problem is reported with
where it is (`services.users.replicas: ...`), all at once; a gateway's inline routes,
routes file and policy are checked here too, with the gateway's own parser, so a bad
route stops `shoal up` before anything starts (`gateway.routes[1].service: ...`).

With `security:`, the embedded control plane runs with `--tls-*` and/or `--acl` (its
ACLs bootstrapped with `token`), and every service replica and gateway worker gets
`SHOAL_TOKEN` and `SHOAL_TLS_CA`/`_CERT`/`_KEY`, so their SDK clients authenticate. A
value written `${NAME}` is read from the environment when the manifest is loaded (so the
token need not be written in the file); an unset variable is a problem like any other.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ConfigSeed",
    "GatewaySpec",
    "Manifest",
    "ManifestError",
    "SecuritySpec",
    "ServiceSpec",
    "TlsSpec",
    "load_manifest",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PLACEHOLDERS = {"port", "replica", "service", "data", "root"}
_FIELD = re.compile(r"\{([A-Za-z_]+)\}")


class ManifestError(ValueError):
    """The manifest cannot be used; `problems` lists each with where it is."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_placeholders(text: str) -> str:
    unknown = sorted(set(_FIELD.findall(text)) - _PLACEHOLDERS)
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} (known: {', '.join(sorted(_PLACEHOLDERS))})"
        )
    return text


class ServiceSpec(_Strict):
    command: str
    replicas: int = Field(default=1, ge=0, le=64)
    env: dict[str, str] = Field(default_factory=dict)
    health: str = "/healthz"  # polled on the replica's port before it counts as up
    start_timeout: float = Field(default=30.0, gt=0, le=600)
    stop_timeout: float = Field(default=30.0, gt=0, le=600)  # SIGTERM -> SIGKILL

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        try:
            shlex.split(value)
        except ValueError as error:
            raise ValueError(f"cannot be split into words: {error}") from None
        return _check_placeholders(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            _check_placeholders(text)
        return value

    @field_validator("health")
    @classmethod
    def _health(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be a path starting with /")
        return value


class ControlPlaneSpec(_Strict):
    port: int = Field(default=7700, ge=1, le=65534)
    host: str = "127.0.0.1"


_CHOSEN_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{32,256}")  # what the bootstrap accepts
_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class TlsSpec(_Strict):
    """PEM files: the control plane's own, and the client certificate given to children."""

    ca: str
    cert: str | None = None
    key: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @model_validator(mode="after")
    def _pairs(self) -> TlsSpec:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give cert and key together")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("give client_cert and client_key together")
        return self

    def files(self) -> dict[str, str]:
        named = {
            "ca": self.ca,
            "cert": self.cert,
            "key": self.key,
            "client_cert": self.client_cert,
            "client_key": self.client_key,
        }
        return {name: path for name, path in named.items() if path is not None}


class SecuritySpec(_Strict):
    """The `security:` section: TLS files and/or the ACL management token."""

    tls: TlsSpec | None = None
    token: str | None = None

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not _CHOSEN_TOKEN.fullmatch(value):
            raise ValueError(
                "must be 32 to 256 letters, digits or -._~+/= "
                "(`python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return value


class ConfigSeed(_Strict):
    file: str | None = None
    content: str | None = None
    format: str | None = None  # default: from the file's suffix, else text

    @model_validator(mode="after")
    def _one_source(self) -> ConfigSeed:
        if (self.file is None) == (self.content is None):
            raise ValueError("give exactly one of file or content")
        return self


GATEWAY = "gateway"  # the gateway's group name in `shoal ps` (no service may take it)


class GatewaySpec(_Strict):
    """The `gateway:` section: one `python -m shoal.gateway` per worker, supervised."""

    port: int = Field(default=8080, ge=1, le=65535)
    host: str = "127.0.0.1"
    routes: list[dict[str, Any]] | dict[str, Any] | None = None  # a list, or a whole table
    routes_file: str | None = None  # relative to the manifest's directory
    routes_item: str | None = None  # NAMESPACE/NAME in the config center
    policy: dict[str, Any] | None = None
    workers: int = Field(default=1, ge=1, le=64)
    access_log: str = "-"  # "-" (shown with the gateway's lines), "off", or a path ({data}/...)
    start_timeout: float = Field(default=30.0, gt=0, le=600)
    stop_timeout: float = Field(default=30.0, gt=0, le=600)

    @field_validator("access_log")
    @classmethod
    def _access_log(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('must be "-", "off" or a path')
        return _check_placeholders(value)

    @model_validator(mode="after")
    def _check(self) -> GatewaySpec:
        from shoal.gateway.routes import RouteError, parse_routes
        from shoal.service.policy import ClientPolicy, PolicyError

        if self.routes is None and self.routes_file is None and self.routes_item is None:
            raise ValueError("give its routes: routes (inline), routes_file or routes_item")
        if self.routes is not None and self.routes_file is not None:
            raise ValueError("routes and routes_file exclude each other")
        base = None
        if self.policy is not None:
            try:
                base = ClientPolicy.from_mapping(self.policy)
            except PolicyError as error:
                raise ValueError(f"policy: {error}") from None
        if self.routes is not None:
            try:
                parse_routes(self.table(), base)
            except RouteError as error:
                raise ValueError(str(error)) from None
        if self.routes_item is not None:
            namespace, sep, name = self.routes_item.partition("/")
            if not sep or not _NAME.match(namespace) or not _NAME.match(name):
                raise ValueError(f"routes_item: {self.routes_item!r} is not NAMESPACE/NAME")
        return self

    def table(self) -> dict[str, Any]:
        """The inline routes as a route table document."""
        return self.routes if isinstance(self.routes, dict) else {"routes": self.routes}


class Manifest(_Strict):
    name: str
    control_plane: ControlPlaneSpec = ControlPlaneSpec()
    endpoints: str | None = None
    config: dict[str, ConfigSeed] = Field(default_factory=dict)
    services: dict[str, ServiceSpec]
    gateway: GatewaySpec | None = None
    security: SecuritySpec | None = None

    @model_validator(mode="after")
    def _gateway_name(self) -> Manifest:
        if self.gateway is not None and GATEWAY in self.services:
            raise ValueError(
                f"services.{GATEWAY}: that name is the gateway's in `shoal ps`; rename the service"
            )
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("1-64 letters, digits, '.', '_' or '-', not starting with those")
        return value

    @field_validator("services")
    @classmethod
    def _services(cls, value: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        if not value:
            raise ValueError("name at least one service")
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r}: a service name is letters, digits, '.', '_', '-'")
        return value

    @field_validator("config")
    @classmethod
    def _config(cls, value: dict[str, ConfigSeed]) -> dict[str, ConfigSeed]:
        for item in value:
            namespace, sep, name = item.partition("/")
            if not sep or not _NAME.match(namespace) or not _NAME.match(name):
                raise ValueError(f"{item!r}: a config item is NAMESPACE/NAME")
        return value


def _where(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def _problem(location: tuple[Any, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")  # pydantic's, for our own ValueErrors
    if not location and message.startswith("services."):  # a whole-manifest check
        return message
    return f"{_where(location)}: {message}"


def load_manifest(path: str | Path) -> tuple[Manifest, Path]:
    """The manifest at `path` and its directory; `ManifestError` listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(file, [f"cannot read it: {error.strerror or error}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestError(file, [f"not valid YAML{where}: {error}"]) from None
    if not isinstance(data, dict):
        raise ManifestError(file, ["the manifest must be a mapping (name:, services:, ...)"])
    unset = _expand_env(data.get("security"), ("security",))
    if unset:
        raise ManifestError(file, unset)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        problems = [_problem(e["loc"], e["msg"]) for e in error.errors()]
        raise ManifestError(file, problems) from None
    root = file.resolve().parent
    missing = [
        f"config.{item}.file: {seed.file} does not exist"
        for item, seed in manifest.config.items()
        if seed.file is not None and not (root / seed.file).is_file()
    ]
    security = manifest.security
    if security is not None and security.tls is not None:
        missing += [
            f"security.tls.{name}: {path} does not exist"
            for name, path in security.tls.files().items()
            if not (root / path).is_file()
        ]
    gateway = manifest.gateway
    if gateway is not None and gateway.routes_file is not None:
        missing += _check_routes_file(root / gateway.routes_file, gateway)
    if missing:
        raise ManifestError(file, missing)
    return manifest, root


def _expand_env(node: Any, where: tuple[str, ...]) -> list[str]:
    """Replace, in place, every string `${NAME}` under `node` by the variable's value; the
    problems of the ones that are not set."""
    import os

    problems: list[str] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in list(items):
        if isinstance(value, str) and (match := _ENV_REFERENCE.match(value)):
            found = os.environ.get(match.group(1))
            if not found:
                problems.append(f"{_where((*where, key))}: {value} is not set in the environment")
            else:
                node[key] = found
        else:
            problems += _expand_env(value, (*where, str(key)))
    return problems


def _check_routes_file(path: Path, gateway: GatewaySpec) -> list[str]:
    """The problem with a gateway's routes file, if any (the gateway re-reads it later)."""
    from shoal.gateway.routes import RouteError
    from shoal.gateway.server import read_table
    from shoal.service.policy import ClientPolicy

    if not path.is_file():
        return [f"gateway.routes_file: {gateway.routes_file} does not exist"]
    base = ClientPolicy.from_mapping(gateway.policy) if gateway.policy is not None else None
    try:
        read_table(path, base)
    except (RouteError, OSError, UnicodeDecodeError) as error:
        return [f"gateway.routes_file: {gateway.routes_file}: {error}"]
    return []


def expand(text: str, **values: object) -> str:
    """`text` with its placeholders filled in (all known ones must be given)."""
    return _FIELD.sub(lambda m: str(values[m.group(1)]), text)
