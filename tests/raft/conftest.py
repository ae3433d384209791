"""`pytest tests/raft --rewrite` regenerates the golden files in tests/raft/testdata/."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="write the actual output of tests/raft/testdata/*.txt back into the files",
    )
