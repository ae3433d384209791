"""Fuzz a real member's HTTP API from its own OpenAPI schema (`make fuzz`).

Starts one `shoal server` on loopback, runs schemathesis against
`/api/v1/openapi.json` with the checks that make the schema a contract -- no 5xx, only
documented statuses, documented content types, bodies that match their schemas -- in
both positive (valid by the schema) and negative (invalid) modes, and exits non-zero on
any failure. The bar is 0 server errors and 0 schema violations.

Streams (watches, the keep-alive stream) are left out: a valid request to one never
ends, so a request timeout would be reported instead of an answer; their errors are
covered by the integration tests. Addresses the fuzzer generates are pointed at
loopback (hooks.py).

    python -m tests.fuzz.run [--max-examples N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from shoal.testing import ServerProcess

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)
STREAMS = r"/watch$|/keepalive-stream$"


def fuzz(max_examples: int, seed: int, workdir: Path) -> int:
    """Run one fuzz session against a fresh member; schemathesis' exit code."""
    member = ServerProcess("fuzz", workdir / "fuzz" / "data").start()
    try:
        member.wait_ready()
        root = str(Path(__file__).parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": path}
        st = Path(sys.executable).with_name("st")
        command = [
            str(st), "run", f"{member.url}/api/v1/openapi.json",
            "--checks", CHECKS,
            "--mode", "all",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", str(max_examples),
            "--seed", str(seed),
            "--exclude-path-regex", STREAMS,
            "--request-timeout", "10",
            "--workers", "1",
            "--generation-database", "none",
            "--no-color",
        ]  # fmt: skip
        # Run in the scratch directory: nothing schemathesis writes lands in the tree.
        done = subprocess.run(command, env=env, cwd=workdir, check=False)
        if not member.alive:
            print(f"the member died during the run:\n{member.log()}", file=sys.stderr)
            return 1
        return done.returncode
    finally:
        member.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-fuzz-") as workdir:
        return fuzz(args.max_examples, args.seed, Path(workdir))


if __name__ == "__main__":
    raise SystemExit(main())
