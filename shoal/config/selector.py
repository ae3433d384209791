"""Labels of an instance and the selectors of a gray release (beta) that match them.

A selector is a set of ``label = value`` pairs that must ALL hold: ``{"zone": "eu",
"canary": "true"}`` matches an instance labelled ``zone=eu, canary=true, host=a`` and
not one labelled ``zone=eu``. An empty selector would match everyone, which is a normal
publish in disguise, so a beta must name at least one label. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import ConfigError, InvalidSelector

MAX_LABELS = 32
MAX_LABEL_VALUE = 256
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,62})")


def check_labels(labels: Mapping[str, str], what: str = "labels") -> dict[str, str]:
    """A validated plain copy of ``labels`` (raises `InvalidSelector`)."""
    if len(labels) > MAX_LABELS:
        raise InvalidSelector(f"{what}: at most {MAX_LABELS} labels, got {len(labels)}")
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidSelector(
                f"{what}: label name {key!r} must be 1-63 letters, digits or ._/- "
                "starting with a letter or digit"
            )
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise InvalidSelector(
                f"{what}: the value of {key!r} must be a string of at most "
                f"{MAX_LABEL_VALUE} characters"
            )
        check_text(value, f"{what}: the value of {key!r}")
        out[key] = value
    return out


def check_text(text: str, what: str) -> None:
    """Refuse text UTF-8 cannot encode (a lone UTF-16 surrogate, as JSON's "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ConfigError(
            f"{what} holds a lone UTF-16 surrogate at character {error.start}, not Unicode text"
        ) from None


def check_selector(selector: Mapping[str, str]) -> dict[str, str]:
    """A validated selector; it must name at least one label."""
    checked = check_labels(selector, "selector")
    if not checked:
        raise InvalidSelector("selector must name at least one label (an empty one matches all)")
    return checked


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every pair of ``selector`` is in ``labels``; an empty selector matches nothing."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parse_pairs(pairs: list[str], what: str = "label") -> dict[str, str]:
    """``["zone=eu", "canary=true"]`` -> a dict (for command lines); raises `InvalidSelector`."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidSelector(f"{what} {pair!r} must look like key=value")
        out[key.strip()] = value.strip()
    return check_labels(out, what + "s")
