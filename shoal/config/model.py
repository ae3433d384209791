"""Config items, their versions and gray releases, and how they lie in the key space.

Theory of operation. An item ``namespace/name`` owns the key prefix
``/config/{namespace}/{name}/``:

    /config/{ns}/{name}/meta               {"version": N, "format", "updated"}: the current
                                           version; its mod_revision guards every write
    /config/{ns}/{name}/v/{N:010d}         one `Version` record per version, never changed
    /config/{ns}/{name}/beta               the `Beta` record while a gray release runs

Versions are numbered 1, 2, 3... and kept for ever (the full history). The current
version is always the newest: a rollback to N and a beta promotion each publish a NEW
version (with ``kind`` "rollback" / "promote"), so history only grows and every state
an instance ever saw has a number.

Every write is planned here as a `Plan` (guards + puts + deletes) and carried out by the
node as ONE store transaction whose compares are the guards: two publishes that read the
same meta cannot both commit, so no two publishes ever share a version number; the loser
gets `Conflict` and retries. Time comes in as ``now`` (seconds since the epoch). No I/O.

Every text a record holds (content, author, message, selector) is checked to be
encodable UTF-8 while planning, so no plan can carry a record that fails to render.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError, InvalidName, NotFound, VersionMismatch
from .formats import content_bytes, validate
from .selector import check_selector, check_text, matches

CONFIG_PREFIX = "/config/"
MAX_AUTHOR = 128
MAX_MESSAGE = 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidName(
            f"{what} {value!r} must be 1-128 letters, digits or ._- starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, slots=True)
class ItemId:
    """The address of a config item, e.g. ``ItemId("prod", "articles")``."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        _check_name(self.namespace, "namespace")
        _check_name(self.name, "name")

    @classmethod
    def parse(cls, text: str) -> ItemId:
        """``"prod/articles"`` -> ``ItemId("prod", "articles")``."""
        namespace, sep, name = text.partition("/")
        if not sep:
            raise InvalidName(f"{text!r} must look like NAMESPACE/NAME")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def prefix(self) -> str:
        return f"{CONFIG_PREFIX}{self.namespace}/{self.name}/"

    @property
    def meta_key(self) -> str:
        return self.prefix + "meta"

    @property
    def beta_key(self) -> str:
        return self.prefix + "beta"

    @property
    def versions_prefix(self) -> str:
        return self.prefix + "v/"

    def version_key(self, number: int) -> str:
        return f"{self.versions_prefix}{number:010d}"


def namespace_prefix(namespace: str | None) -> str:
    """The key prefix of every item in ``namespace`` (all items if None)."""
    if namespace is None:
        return CONFIG_PREFIX
    return f"{CONFIG_PREFIX}{_check_name(namespace, 'namespace')}/"


def item_of_meta_key(key: str) -> ItemId | None:
    """The item whose meta key ``key`` is, or None for any other key."""
    if not key.startswith(CONFIG_PREFIX) or not key.endswith("/meta"):
        return None
    parts = key[len(CONFIG_PREFIX) : -len("/meta")].split("/")
    if len(parts) != 2:
        return None
    try:
        return ItemId(parts[0], parts[1])
    except InvalidName:
        return None


def sha256(content: str) -> str:
    return hashlib.sha256(content_bytes(content)).hexdigest()


def _text_field(value: str | None, default: str, what: str, limit: int) -> str:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__}")
    text = default if value is None or not value.strip() else value.strip()
    if len(text) > limit:
        raise ConfigError(f"{what} is {len(text)} characters; at most {limit}")
    check_text(text, what)
    return text


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    """One published version. ``kind``: "publish", "rollback" (of ``source``) or "promote"."""

    number: int
    content: str
    format: str
    author: str
    time: float
    message: str
    sha256: str
    kind: str = "publish"
    source: int | None = None

    def summary(self) -> dict[str, Any]:
        """Everything but the content (for history listings)."""
        out = asdict(self)
        del out["content"]
        out["size"] = len(content_bytes(self.content))
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Version:
        return cls(**json.loads(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class Beta:
    """A gray release: ``content`` for instances whose labels match ``selector``."""

    content: str
    format: str
    selector: dict[str, str] = field(default_factory=dict)
    author: str
    time: float
    message: str
    sha256: str
    base: int  # the current version when the beta was put, for the reader's orientation

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        del out["content"]
        out["size"] = len(content_bytes(self.content))
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Beta:
        return cls(**json.loads(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    version: int
    format: str
    updated: float

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Meta:
        return cls(**json.loads(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What a write was planned against: the records and their store mod_revisions
    (0 = the key does not exist)."""

    meta: Meta | None = None
    meta_revision: int = 0
    beta: Beta | None = None
    beta_revision: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One atomic write: if every ``guards`` key still has that mod_revision (0: absent),
    apply ``puts`` and ``deletes``; otherwise nothing, and the caller reports `Conflict`."""

    guards: tuple[tuple[str, int], ...]
    puts: tuple[tuple[str, bytes], ...] = ()
    deletes: tuple[str, ...] = ()
    delete_prefixes: tuple[str, ...] = ()  # every key under each of these goes too
    version: int | None = None  # the version this plan creates, if any


# -- planning writes ----------------------------------------------------------------------


def plan_publish(
    item: ItemId,
    stored: Stored,
    *,
    content: str,
    fmt: str,
    author: str | None,
    message: str | None,
    now: float,
    kind: str = "publish",
    source: int | None = None,
    expect_version: int | None = None,
) -> tuple[Plan, Version]:
    """A new version with ``content``; validates it first (raises `InvalidContent` etc.).

    With ``expect_version`` the publish happens only if that is the current version (0:
    only if the item does not exist yet) -- compare-and-set for tools that read, edit and
    write back, so a concurrent edit is refused (`VersionMismatch`) instead of lost.
    """
    checked = validate(content, fmt)
    _check_expected(stored, expect_version)
    number = (stored.meta.version if stored.meta else 0) + 1
    version = Version(
        number=number,
        content=content,
        format=checked.value,
        author=_text_field(author, "unknown", "author", MAX_AUTHOR),
        time=now,
        message=_text_field(message, "", "message", MAX_MESSAGE),
        sha256=sha256(content),
        kind=kind,
        source=source,
    )
    meta = Meta(version=number, format=checked.value, updated=now)
    plan = Plan(
        guards=((item.meta_key, stored.meta_revision),),
        puts=((item.version_key(number), version.to_bytes()), (item.meta_key, meta.to_bytes())),
        version=number,
    )
    return plan, version


def plan_rollback(
    item: ItemId,
    stored: Stored,
    target: Version,
    *,
    author: str | None,
    message: str | None,
    now: float,
) -> tuple[Plan, Version]:
    """A new version carrying ``target``'s content and format."""
    _require_item(item, stored)
    return plan_publish(
        item,
        stored,
        content=target.content,
        fmt=target.format,
        author=author,
        message=message or f"rollback to version {target.number}",
        now=now,
        kind="rollback",
        source=target.number,
    )


def plan_beta(
    item: ItemId,
    stored: Stored,
    *,
    content: str,
    fmt: str | None,
    selector: Mapping[str, str],
    author: str | None,
    message: str | None,
    now: float,
) -> tuple[Plan, Beta]:
    """Start (or replace) the item's gray release; the item must already exist."""
    meta = _require_item(item, stored)
    checked = validate(content, fmt or meta.format)
    beta = Beta(
        content=content,
        format=checked.value,
        selector=check_selector(selector),
        author=_text_field(author, "unknown", "author", MAX_AUTHOR),
        time=now,
        message=_text_field(message, "", "message", MAX_MESSAGE),
        sha256=sha256(content),
        base=meta.version,
    )
    plan = Plan(
        guards=((item.meta_key, stored.meta_revision), (item.beta_key, stored.beta_revision)),
        puts=((item.beta_key, beta.to_bytes()),),
    )
    return plan, beta


def plan_promote(
    item: ItemId, stored: Stored, *, author: str | None, message: str | None, now: float
) -> tuple[Plan, Version]:
    """The beta becomes a new normal version for everyone, and the beta ends."""
    beta = _require_beta(item, stored)
    plan, version = plan_publish(
        item,
        stored,
        content=beta.content,
        fmt=beta.format,
        author=author or beta.author,
        message=message or beta.message or "promote beta",
        now=now,
        kind="promote",
    )
    guards = (*plan.guards, (item.beta_key, stored.beta_revision))
    promoted = Plan(guards=guards, puts=plan.puts, deletes=(item.beta_key,), version=plan.version)
    return promoted, version


def plan_drop(item: ItemId, stored: Stored) -> Plan:
    """End the gray release; everyone gets the current version again."""
    _require_beta(item, stored)
    return Plan(guards=((item.beta_key, stored.beta_revision),), deletes=(item.beta_key,))


def plan_delete(item: ItemId, stored: Stored, *, expect_version: int | None = None) -> Plan:
    """Remove the item with its whole history and any beta; watchers see it deleted."""
    _require_item(item, stored)
    _check_expected(stored, expect_version)
    return Plan(guards=((item.meta_key, stored.meta_revision),), delete_prefixes=(item.prefix,))


def _check_expected(stored: Stored, expect_version: int | None) -> None:
    if expect_version is None:
        return
    if expect_version < 0:
        raise ConfigError(f"expected version must be >= 0, got {expect_version}")
    current = stored.meta.version if stored.meta else 0
    if current != expect_version:
        raise VersionMismatch(expect_version, current)


def _require_item(item: ItemId, stored: Stored) -> Meta:
    if stored.meta is None:
        raise NotFound("item", f"no config item {item}")
    return stored.meta


def _require_beta(item: ItemId, stored: Stored) -> Beta:
    _require_item(item, stored)
    if stored.beta is None:
        raise NotFound("beta", f"config item {item} has no beta")
    return stored.beta


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Effective:
    """What one instance should run: the current version, or the beta if it matches."""

    item: ItemId
    version: int  # the current normal version (a beta is layered on it)
    beta: bool
    content: str
    format: str
    sha256: str
    author: str
    time: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.item.namespace,
            "name": self.item.name,
            "version": self.version,
            "beta": self.beta,
            "content": self.content,
            "format": self.format,
            "sha256": self.sha256,
            "author": self.author,
            "time": self.time,
            "message": self.message,
        }

    @property
    def identity(self) -> tuple[int, bool, str]:
        """Two resolutions with equal identity deliver the same thing."""
        return self.version, self.beta, self.sha256


def effective(
    item: ItemId, current: Version, beta: Beta | None, labels: Mapping[str, str]
) -> Effective:
    chosen: Version | Beta = current
    if beta is not None and matches(beta.selector, labels):
        chosen = beta
    return Effective(
        item=item,
        version=current.number,
        beta=chosen is beta,
        content=chosen.content,
        format=chosen.format,
        sha256=chosen.sha256,
        author=chosen.author,
        time=chosen.time,
        message=chosen.message,
    )


def unified_diff(item: ItemId, old: Version, new: Version, context: int = 3) -> str:
    """A unified diff from ``old`` to ``new`` ("" when the contents are equal)."""
    return "".join(
        difflib.unified_diff(
            _lines(old.content),
            _lines(new.content),
            fromfile=f"{item}@{old.number}",
            tofile=f"{item}@{new.number}",
            n=context,
        )
    )


def _lines(content: str) -> list[str]:
    lines = content.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines
