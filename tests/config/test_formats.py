"""Every format rejects a bad document with the parser's line and column."""

from __future__ import annotations

import pytest

from shoal.config import (
    MAX_CONTENT_BYTES,
    ContentTooLarge,
    InvalidContent,
    parse_properties,
    validate,
)

GOOD = [
    ("json", '{"a": [1, 2], "b": {"c": null}}'),
    ("yaml", "a: 1\nb:\n  - x\n  - y\n"),
    ("toml", 'a = 1\n[server]\nhost = "h"\n'),
    ("properties", "# comment\na = 1\nb: two\n"),
    ("text", "anything { at all"),
    ("yaml", ""),
]

BAD = [
    ("json", '{\n  "a": 1,\n  "b": }', 3, 8),
    ("json", '{"a": 1', 1, 8),
    ("yaml", "a: 1\nb: [1, 2\nc: 3\n", 3, 2),
    ("yaml", "a: 1\n  b: 2\n", 2, 4),
    ("yaml", "a: 1\n---\nb: 2\n", 2, 1),
    ("yaml", "a: !!python/object:os.system x\n", 1, 4),
    ("toml", "a = 1\nb = = 2\n", 2, 5),
    ("toml", "a = 1\na = 2\n", 2, 6),
    ("toml", "a = [1,", 1, 8),
    ("properties", "a = 1\njust words\n", 2, 1),
    ("properties", "a = 1\n  = value\n", 2, 3),
    ("properties", "a = \\u12zz\n", 1, 5),
    ("properties", "a = 1 \\", 1, 7),
]


@pytest.mark.parametrize(("fmt", "content"), GOOD)
def test_good_documents_pass(fmt: str, content: str) -> None:
    assert validate(content, fmt).value == fmt


@pytest.mark.parametrize(("fmt", "content", "line", "column"), BAD)
def test_bad_documents_report_line_and_column(
    fmt: str, content: str, line: int, column: int
) -> None:
    with pytest.raises(InvalidContent) as caught:
        validate(content, fmt)
    error = caught.value
    assert (error.format, error.line, error.column) == (fmt, line, column)
    assert f"at line {line}, column {column}" in error.message


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(InvalidContent, match="json, yaml, toml, properties, text"):
        validate("x", "xml")


def test_a_lone_surrogate_is_not_text() -> None:
    with pytest.raises(InvalidContent) as caught:
        validate("ok\nab\ud800", "text")
    assert (caught.value.line, caught.value.column) == (2, 3)


def test_size_limit_counts_utf8_bytes() -> None:
    validate("x" * MAX_CONTENT_BYTES, "text")
    with pytest.raises(ContentTooLarge, match="512 KiB"):
        validate("x" * (MAX_CONTENT_BYTES + 1), "text")
    with pytest.raises(ContentTooLarge):
        validate("é" * (MAX_CONTENT_BYTES // 2 + 1), "text")  # two bytes each


def test_properties_semantics() -> None:
    doc = "a = 1\n! bang comment\nlong = one \\\n    two\nu = caf\\u00e9\nt=x\\ty\na = 2\nk:v\n"
    assert parse_properties(doc) == {
        "a": "2",
        "long": "one two",
        "u": "café",
        "t": "x\ty",
        "k": "v",
    }


def test_properties_error_inside_a_continued_line_points_at_the_physical_line() -> None:
    with pytest.raises(InvalidContent) as caught:
        parse_properties("a = one \\\n   two \\uZZ\n")
    assert (caught.value.line, caught.value.column) == (2, 8)


PARSED = [
    ("json", '{"a": [1, 2]}', {"a": [1, 2]}),
    ("yaml", "a: 1\nb: [x]\n", {"a": 1, "b": ["x"]}),
    ("toml", 'a = 1\n[s]\nh = "x"\n', {"a": 1, "s": {"h": "x"}}),
    ("properties", "a = 1\nb: two\n", {"a": "1", "b": "two"}),
    ("text", "plain {", "plain {"),
]


@pytest.mark.parametrize(("fmt", "content", "value"), PARSED)
def test_parse_content_gives_the_value_in_each_format(
    fmt: str, content: str, value: object
) -> None:
    from shoal.config import parse_content

    assert parse_content(content, fmt) == value


def test_parse_content_validates_first() -> None:
    from shoal.config import parse_content

    with pytest.raises(InvalidContent, match="line 1"):
        parse_content('{"a": }', "json")
