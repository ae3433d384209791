"""The config center's one exception hierarchy.

    ConfigError                 anything wrong with a config request (the caller's fault)
    +-- InvalidName             a namespace, name or version that cannot address an item
    +-- InvalidContent          content that does not parse in its declared format
    +-- ContentTooLarge         content over `MAX_CONTENT_BYTES`
    +-- InvalidSelector         a label selector or label set that is malformed
    +-- NotFound                the item, the version or the beta does not exist
    +-- Conflict                the item changed between read and write (retry)
        +-- VersionMismatch     a conditional write expected another current version

Foreign parser exceptions (json, yaml, tomllib) are translated into `InvalidContent` in
`formats.py`, the only module that imports those parsers. No I/O here.
"""

from __future__ import annotations


class ConfigError(Exception):
    """Base of every config-center error; `message` says what is wrong and where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidName(ConfigError):
    pass


class InvalidContent(ConfigError):
    """Content that does not parse; ``line``/``column`` are 1-based, None if unknown."""

    def __init__(self, fmt: str, problem: str, line: int | None, column: int | None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"invalid {fmt}{where}: {problem}")
        self.format, self.problem, self.line, self.column = fmt, problem, line, column


class ContentTooLarge(ConfigError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"content is {size} bytes; the limit is {limit} bytes ({limit // 1024} KiB)"
        )
        self.size, self.limit = size, limit


class InvalidSelector(ConfigError):
    pass


class NotFound(ConfigError):
    """``what`` is "item", "version" or "beta"."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what


class Conflict(ConfigError):
    pass


class VersionMismatch(Conflict):
    """A publish or delete made on condition that the current version is ``expected``
    (0: the item must not exist yet) found ``current`` instead; nothing was written."""

    def __init__(self, expected: int, current: int) -> None:
        now = f"is version {current}" if current else "does not exist"
        super().__init__(f"expected version {expected}, but the item {now}")
        self.expected, self.current = expected, current
