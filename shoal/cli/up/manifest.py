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

In `command` and `env`, `{port}` is the replica's own free port, `{replica}` its number
(1, 2, ...), `{service}` the service's name, `{data}` the application's data directory
(`.shoal/` beside the manifest) and `{root}` the manifest's directory. Each replica also
gets `SHOAL_ENDPOINTS`, `SHOAL_INSTANCE_ID` (`{service}-{replica}`) and `PORT` in its
environment. Commands run from the manifest's directory. Every problem is reported with
where it is (`services.users.replicas: ...`), all at once.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ConfigSeed", "Manifest", "ManifestError", "ServiceSpec", "load_manifest"]

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


class ConfigSeed(_Strict):
    file: str | None = None
    content: str | None = None
    format: str | None = None  # default: from the file's suffix, else text

    @model_validator(mode="after")
    def _one_source(self) -> ConfigSeed:
        if (self.file is None) == (self.content is None):
            raise ValueError("give exactly one of file or content")
        return self


class Manifest(_Strict):
    name: str
    control_plane: ControlPlaneSpec = ControlPlaneSpec()
    endpoints: str | None = None
    config: dict[str, ConfigSeed] = Field(default_factory=dict)
    services: dict[str, ServiceSpec]

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
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        problems = [f"{_where(e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ManifestError(file, problems) from None
    root = file.resolve().parent
    missing = [
        f"config.{item}.file: {seed.file} does not exist"
        for item, seed in manifest.config.items()
        if seed.file is not None and not (root / seed.file).is_file()
    ]
    if missing:
        raise ManifestError(file, missing)
    return manifest, root


def expand(text: str, **values: object) -> str:
    """`text` with its placeholders filled in (all known ones must be given)."""
    return _FIELD.sub(lambda m: str(values[m.group(1)]), text)
