"""Partitions that come from the outside world (the file system). Not pure: it reads."""

from __future__ import annotations

import glob as _glob
import os.path

__all__ = ["files"]


def files(pattern: str) -> list[str]:
    """The paths matching ``pattern`` (``**`` recurses), sorted, one partition per file.

    Directories are left out. An empty match is an error, because a job with no
    partitions is always a mistake and the pattern is the likeliest culprit.
    """
    found = sorted(p for p in _glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not found:
        raise ValueError(f"no files match {pattern!r}")
    return found
