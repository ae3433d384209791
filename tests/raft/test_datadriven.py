"""The test-file format of testdata/: parsing, the doubled separator, and exact rewrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from .datadriven import Arg, FormatError, parse, parse_args, render

TESTDATA = Path(__file__).parent / "testdata"


def test_parse_args() -> None:
    assert parse_args("deliver-msgs n2 n3 drop=(n4, n5) type=AppendEntries") == (
        "deliver-msgs",
        (Arg("n2"), Arg("n3"), Arg("drop", ("n4", "n5")), Arg("type", ("AppendEntries",))),
    )
    assert parse_args("raft-state") == ("raft-state", ())


@pytest.mark.parametrize("line", ["x=1 n1", "cmd a=(b", "=x"])
def test_parse_args_rejects(line: str) -> None:
    with pytest.raises(FormatError):
        parse_args(line, "f.txt:3")


def test_cases_comments_and_doubled_separators() -> None:
    text = (
        "# a comment\n"
        "\n"
        "cmd n1 k=v\n"
        "input line\n"
        "----\n"
        "out 1\n"
        "out 2\n"
        "\n"
        "blank\n"
        "----\n"
        "----\n"
        "first\n"
        "\n"
        "second\n"
        "----\n"
        "----\n"
    )
    test = parse(text, "t.txt")
    first, second = test.cases
    assert (first.line, first.command, first.positional, first.option("k")) == (
        3,
        "cmd",
        ["n1"],
        "v",
    )
    assert first.input == ("input line",)
    assert first.expected == "out 1\nout 2"
    assert (second.line, second.expected) == (9, "first\n\nsecond")
    assert render(test, {}) == text
    assert render(test, {3: "new"}).split("\n")[5:7] == ["new", ""]
    # An output that gains a blank line is written between doubled separators.
    assert "----\n----\na\n\nb\n----\n----\n" in render(test, {3: "a\n\nb"})


@pytest.mark.parametrize(
    ("text", "message"),
    [("cmd\nout\n", "has no ---- line"), ("cmd\n----\n----\nnever closed\n", "not closed")],
)
def test_malformed_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=f"t.txt:1: .*{message}"):
        parse(text, "t.txt")


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_golden_files_render_back_exactly(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert render(parse(text, path.name), {}) == text
