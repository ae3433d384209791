"""Data-driven test files: commands with their expected output, read and rewritten.

The format is cockroachdb/datadriven's, which etcd-io/raft's interaction tests use:

    # Comments and blank lines between cases are kept as they are.
    command arg key=value key=(a,b)
    optional input lines
    ----
    expected output, up to the first blank line

An expected output that itself contains blank lines sits between doubled separators:

    command
    ----
    ----
    first paragraph

    second paragraph
    ----
    ----

`rewrite` writes a file back with new outputs and everything else untouched, so
`pytest tests/raft --rewrite` regenerates the golden files and `git diff` shows what the
change did to the protocol's behaviour. (No PyPI package reads this format; the one named
`datadriven` is unrelated.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = "----"


class FormatError(ValueError):
    """A malformed test file; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Arg:
    """`key` alone (a positional argument) or `key=value` / `key=(v1,v2)`."""

    key: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Case:
    path: str
    line: int  # 1-based line of the command
    raw: str  # the command line as written
    command: str
    args: tuple[Arg, ...]
    input: tuple[str, ...]
    expected: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def positional(self) -> list[str]:
        return [a.key for a in self.args if not a.values]

    def option(self, key: str, default: str | None = None) -> str | None:
        for a in self.args:
            if a.key == key and a.values:
                return a.values[0]
        return default

    def options(self, key: str) -> list[str]:
        return [v for a in self.args if a.key == key for v in a.values]


@dataclass(slots=True)
class ScriptFile:
    path: str
    # Verbatim text (comments, blank lines) and cases, in file order.
    parts: list[str | Case] = field(default_factory=list)

    @property
    def cases(self) -> list[Case]:
        return [p for p in self.parts if isinstance(p, Case)]


_TOKEN = re.compile(r"\s*([^\s=()]+)(?:=(\([^)]*\)|[^\s()]*))?")


def parse_args(text: str, where: str = "") -> tuple[str, tuple[Arg, ...]]:
    """`cmd a b=c d=(e,f)` -> ("cmd", (Arg("a"), Arg("b", ("c",)), Arg("d", ("e", "f"))))."""
    tokens: list[Arg] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FormatError(f"{where}: cannot parse {text[pos:]!r} in {text!r}")
        key, value = m.group(1), m.group(2)
        if value is None:
            tokens.append(Arg(key))
        elif value.startswith("("):
            inner = value[1:-1]
            tokens.append(Arg(key, tuple(v.strip() for v in inner.split(",") if v.strip())))
        else:
            tokens.append(Arg(key, (value,)))
        pos = m.end()
    if not tokens or tokens[0].values:
        raise FormatError(f"{where}: a case must start with a command, got {text!r}")
    return tokens[0].key, tuple(tokens[1:])


def parse(text: str, path: str) -> ScriptFile:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = ScriptFile(path)
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            out.parts.append(line)
            i += 1
            continue
        start = i + 1
        where = f"{path}:{start}"
        command, args = parse_args(line, where)
        i += 1
        given: list[str] = []
        while i < len(lines) and lines[i] != SEPARATOR:
            given.append(lines[i])
            i += 1
        if i == len(lines):
            raise FormatError(f"{where}: {command!r} has no {SEPARATOR} line")
        i += 1
        expected: list[str] = []
        if i < len(lines) and lines[i] == SEPARATOR:  # a block that may hold blank lines
            i += 1
            while i + 1 < len(lines) and not (lines[i] == SEPARATOR and lines[i + 1] == SEPARATOR):
                expected.append(lines[i])
                i += 1
            if i + 1 >= len(lines):
                raise FormatError(f"{where}: the doubled {SEPARATOR} block is not closed")
            i += 2
        else:
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
        expected_text = "\n".join(expected)
        out.parts.append(Case(path, start, line, command, args, tuple(given), expected_text))
    return out


def read(path: Path) -> ScriptFile:
    return parse(path.read_text(encoding="utf-8"), path.as_posix())


def format_case(case: Case, output: str) -> list[str]:
    """A case's lines with `output` as its expected output (the command line verbatim)."""
    lines = [case.raw, *case.input, SEPARATOR]
    if any(not ln.strip() for ln in output.split("\n")):
        lines += [SEPARATOR, output, SEPARATOR, SEPARATOR]
    else:
        lines.append(output)
    return lines


def render(test: ScriptFile, outputs: dict[int, str]) -> str:
    """The file text with each case's output replaced by `outputs[case.line]` (if given)."""
    lines: list[str] = []
    for part in test.parts:
        if isinstance(part, str):
            lines.append(part)
        else:
            lines += format_case(part, outputs.get(part.line, part.expected))
    return "\n".join(lines) + "\n"
