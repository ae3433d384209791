"""Imported first by a ``shoal worker``'s forkserver (never by anything else).

A forkserver child re-runs the parent's ``__main__`` module by name; for ``shoal worker``
that module (``shoal.cli.main``) is already preloaded, which is what makes slot processes
start warm, and runpy warns about exactly that. The warning is expected: silence it here,
in the forkserver, so every slot process inherits the filter.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings(
    "ignore",
    message=r".*found in sys\.modules after import of package.*",
    category=RuntimeWarning,
)
