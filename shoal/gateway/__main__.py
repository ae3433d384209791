"""`python -m shoal.gateway --port P --routes routes.yaml`: what `shoal gateway` runs.

The same flags as `shoal gateway` (see `--help`); this entry point has no dependency on
the CLI's libraries so that worker processes start quickly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .server import GatewayOptions, run


def parse_args(argv: Sequence[str] | None = None) -> GatewayOptions:
    p = argparse.ArgumentParser(prog="python -m shoal.gateway", description=__doc__)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--routes", dest="routes_file")
    p.add_argument("--routes-item", dest="routes_item")
    p.add_argument(
        "--endpoints", default=os.environ.get("SHOAL_ENDPOINTS") or "http://127.0.0.1:7700"
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--admin-port", type=int)
    p.add_argument("--admin-host", default="127.0.0.1")
    p.add_argument("--access-log", default="-", help="a path, - for stdout, off for none")
    p.add_argument("--drain-timeout", type=float, default=10.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--policy", help="a ClientPolicy as JSON, under the table's defaults.policy")
    a = p.parse_args(argv)
    try:
        return GatewayOptions(
            port=a.port,
            host=a.host,
            routes_file=a.routes_file,
            routes_item=a.routes_item,
            endpoints=a.endpoints,
            workers=a.workers,
            admin_port=a.admin_port,
            admin_host=a.admin_host,
            access_log=None if a.access_log == "off" else a.access_log,
            drain_timeout=a.drain_timeout,
            seed=a.seed,
            policy=a.policy,
        )
    except ValueError as error:
        p.error(str(error))


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
