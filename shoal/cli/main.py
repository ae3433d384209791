"""Entry point of the ``shoal`` command.

This module parses arguments and hands off to the subcommand's own module; it holds no
logic of its own. Subcommand modules are imported lazily so that ``shoal --version``
stays fast and works even when optional parts are missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shoal import __version__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="shoal: microservices and distributed computing platform.",
    )
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "sim",
        help="run the deterministic Raft simulator (see 'shoal sim --help')",
        # The simulator owns its options: main() passes everything after 'sim' to it.
        add_help=False,
    )
    return parser


def _run_sim(argv: list[str]) -> int:
    from shoal.raft.sim.__main__ import main as sim_main

    return sim_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shoal`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    # Split at the subcommand ourselves so its arguments reach it untouched.
    if args and args[0] == "sim":
        return _run_sim(args[1:])
    ns = parser.parse_args(args)
    if ns.command is None:
        parser.print_help()
        return 2
    parser.error(f"unknown command {ns.command!r}")
    return 2  # pragma: no cover - parser.error exits


if __name__ == "__main__":
    raise SystemExit(main())
