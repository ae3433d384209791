"""Validation of config content in its declared format, with the parser's line and column.

Theory of operation: `validate(content, fmt)` first checks what every format shares (the
text is encodable UTF-8 and within `MAX_CONTENT_BYTES`), then parses with the format's
own parser and throws the result away -- the config center stores text exactly as
published, so comments and layout survive. A parse failure becomes `InvalidContent` with
a 1-based line and column taken from the parser:

- json: `json.JSONDecodeError.lineno/colno`;
- yaml: the safe loader (libyaml's when available, never an unsafe one);
  `MarkedYAMLError.problem_mark` is
  0-based, so both are shifted by one;
- toml: `tomllib.TOMLDecodeError` only says "(at line L, column C)" in its message
  (attributes arrived in Python 3.14; used when present);
- properties: the small strict parser below (every entry needs ``=`` or ``:``).

This is the only module that imports those parsers. No I/O.
"""

from __future__ import annotations

import enum
import json
import re
import tomllib
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from .errors import ContentTooLarge, InvalidContent

MAX_CONTENT_BYTES = 512 * 1024


class Format(enum.StrEnum):
    JSON = "json"
    YAML = "yaml"
    TOML = "toml"
    PROPERTIES = "properties"
    TEXT = "text"


FORMATS = tuple(f.value for f in Format)


def content_bytes(content: str) -> bytes:
    """``content`` as UTF-8; a lone surrogate (JSON allows ``"\\ud800"``) is an error."""
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError as error:
        line, column = position(content, error.start)
        raise InvalidContent("text", "not valid UTF-8 text", line, column) from None


def position(content: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of character ``offset``."""
    line = content.count("\n", 0, offset) + 1
    return line, offset - (content.rfind("\n", 0, offset) + 1) + 1


def validate(content: str, fmt: Format | str) -> Format:
    """Raise `InvalidContent` / `ContentTooLarge` unless ``content`` is good ``fmt``."""
    try:
        kind = Format(fmt)
    except ValueError:
        raise InvalidContent(
            str(fmt), f"unknown format; use one of {', '.join(FORMATS)}", None, None
        ) from None
    size = len(content_bytes(content))
    if size > MAX_CONTENT_BYTES:
        raise ContentTooLarge(size, MAX_CONTENT_BYTES)
    _CHECKS[kind](content)
    return kind


def parse_content(content: str, fmt: Format | str) -> Any:
    """The value ``content`` holds: a JSON/YAML value, a TOML table, a properties dict,
    or the text itself. Validates first, so bad content raises `InvalidContent`."""
    kind = validate(content, fmt)
    if kind is Format.JSON:
        return json.loads(content)
    if kind is Format.YAML:
        return yaml.load(content, Loader=_YAML_LOADER)  # a safe loader (_YAML_LOADER)
    if kind is Format.TOML:
        return tomllib.loads(content)
    if kind is Format.PROPERTIES:
        return parse_properties(content)
    return content


def _check_json(content: str) -> None:
    try:
        json.loads(content)
    except json.JSONDecodeError as error:
        raise InvalidContent("json", error.msg, error.lineno, error.colno) from None
    except RecursionError:
        raise InvalidContent("json", "nested too deeply", None, None) from None


# PyYAML finds deep nesting only by recursing into it: 100,000 nested '[' cost ~3 s of
# CPU before the RecursionError, all of it on the member's event loop. Flow collections
# deeper than this are refused before parsing (block nesting is bounded by the size limit:
# each level needs one more column of indentation).
MAX_YAML_FLOW_DEPTH = 200
# libyaml's safe loader when PyYAML was built with it: ~4x faster than the pure-Python one
# (a 360 KiB document: 1.4 s against 5.5 s here), which runs on the member's event loop.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FLOW = re.compile(r"""[\[{\]}]|"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'""")


def _flow_depth_exceeded(content: str) -> bool:
    depth = 0
    for match in _FLOW.finditer(content):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_YAML_FLOW_DEPTH:
                return True
        elif token in "]}":
            depth = max(0, depth - 1)
    return False


def _check_yaml(content: str) -> None:
    if _flow_depth_exceeded(content):
        raise InvalidContent(
            "yaml", f"nested too deeply (more than {MAX_YAML_FLOW_DEPTH} levels)", None, None
        )
    try:
        yaml.load(content, Loader=_YAML_LOADER)  # a safe loader (_YAML_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or str(error)
        if error.problem and error.context:
            problem += f" ({error.context})"
        if mark is None:
            raise InvalidContent("yaml", problem, None, None) from None
        raise InvalidContent("yaml", problem, mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as error:  # e.g. ReaderError: a character YAML forbids
        offset = getattr(error, "position", None)
        line, column = position(content, offset) if isinstance(offset, int) else (None, None)
        raise InvalidContent("yaml", str(error).splitlines()[0], line, column) from None
    except RecursionError:
        raise InvalidContent("yaml", "nested too deeply", None, None) from None


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


def _check_toml(content: str) -> None:
    try:
        tomllib.loads(content)
    except tomllib.TOMLDecodeError as error:
        message = str(error.args[0]) if error.args else str(error)
        line, column = getattr(error, "lineno", None), getattr(error, "colno", None)
        if (found := _TOML_AT.search(message)) is not None:
            line, column = line or int(found[1]), column or int(found[2])
            message = message[: found.start()]
        elif (end := _TOML_END.search(message)) is not None:
            line, column = position(content, len(content))
            message = message[: end.start()] + " (at end of document)"
        raise InvalidContent("toml", message, line, column) from None
    except RecursionError:
        raise InvalidContent("toml", "nested too deeply", None, None) from None


def _check_properties(content: str) -> None:
    parse_properties(content)


def _check_text(content: str) -> None:
    pass  # any UTF-8 text; content_bytes has checked that


_CHECKS = {
    Format.JSON: _check_json,
    Format.YAML: _check_yaml,
    Format.TOML: _check_toml,
    Format.PROPERTIES: _check_properties,
    Format.TEXT: _check_text,
}


# -- properties ---------------------------------------------------------------------------

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(content: str) -> dict[str, str]:
    """Java-style ``.properties``, strict: each entry is ``key = value`` or ``key: value``.

    Comments start with ``#`` or ``!``; a line ending in an odd number of backslashes
    continues on the next one (leading blanks dropped); ``\\uXXXX`` and ``\\t\\n\\r\\f``
    escapes are decoded. Unlike Java, a line without ``=`` or ``:`` is an error rather
    than a key with an empty value: it is nearly always a typo. Later keys win.
    """
    out: dict[str, str] = {}
    lines = content.splitlines()
    i = 0
    while i < len(lines):
        number, raw = i + 1, lines[i]
        i += 1
        stripped = raw.lstrip(" \t\f")
        if not stripped or stripped[0] in "#!":
            continue
        indent = len(raw) - len(stripped)
        logical, starts = stripped, [(0, number, indent)]
        while _continues(logical):
            if i >= len(lines):
                raise InvalidContent(
                    "properties", "the last line ends with a continuation backslash",
                    number, len(raw),
                )  # fmt: skip
            logical = logical[:-1]
            nxt = lines[i].lstrip(" \t\f")
            starts.append((len(logical), i + 1, len(lines[i]) - len(nxt)))
            logical += nxt
            i += 1
        key, value = _split_entry(logical, starts)
        out[key] = value
    return out


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


# Where each physical line starts inside a logical (continued) line:
# (offset in the logical line, 1-based line number, blanks stripped from its start).
_Starts = list[tuple[int, int, int]]


def _where(starts: _Starts, offset: int) -> tuple[int, int]:
    """The 1-based line and column in the document of ``offset`` in the logical line."""
    base, line, shift = next(s for s in reversed(starts) if s[0] <= offset)
    return line, offset - base + shift + 1


def _split_entry(logical: str, starts: _Starts) -> tuple[str, str]:
    key_chars: list[str] = []
    j = 0
    while j < len(logical):
        ch = logical[j]
        if ch == "\\":
            decoded, j = _unescape(logical, j, starts)
            key_chars.append(decoded)
            continue
        if ch in "=:":
            break
        key_chars.append(ch)
        j += 1
    else:
        line, column = _where(starts, 0)
        raise InvalidContent("properties", "expected 'key = value' or 'key: value'", line, column)
    key = "".join(key_chars).strip()
    if not key:
        line, column = _where(starts, j)
        raise InvalidContent("properties", "missing key before the separator", line, column)
    j += 1
    value_chars: list[str] = []
    while j < len(logical):
        if logical[j] == "\\":
            decoded, j = _unescape(logical, j, starts)
            value_chars.append(decoded)
        else:
            value_chars.append(logical[j])
            j += 1
    return key, "".join(value_chars).strip(" \t\f")


def _unescape(text: str, j: int, starts: _Starts) -> tuple[str, int]:
    """Decode the escape starting at the backslash ``text[j]``; return it and the next index."""
    if j + 1 >= len(text):
        return "", j + 1
    ch = text[j + 1]
    if ch != "u":
        return _ESCAPES.get(ch, ch), j + 2
    digits = text[j + 2 : j + 6]
    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        line, column = _where(starts, j)
        raise InvalidContent("properties", "malformed \\uXXXX escape", line, column)
    return chr(int(digits, 16)), j + 6
