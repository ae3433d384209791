"""A tour of a real single-member control plane: `python -m examples.control_plane_tour`.

Starts `shoal server` in a temporary directory, then: writes and reads keys, resumes a
watch from a revision, lets a lease expire, SIGKILLs the server and restarts it to show
that every acknowledged write survived. Part of `make demo` until the blog example
(services on the SDK) replaces it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from shoal.client import ControlPlane
from shoal.testing import ServerProcess, wait_for


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="shoal-tour-") as tmp:
        server = ServerProcess("tour", Path(tmp) / "data").start()
        try:
            server.wait_ready()
            print(f"\n== A real control plane: shoal server on {server.url}")
            with ControlPlane(server.url) as plane:
                first = plane.put("blog/config/title", "shoal blog")
                for i in range(1, 4):
                    plane.put(f"blog/articles/{i}", f"article {i}")
                say(f"4 writes, fsync'd before acknowledgement (revisions {first}..{first + 3})")
                page = plane.list("blog/articles/")
                keys = [kv.key for kv in page.kvs]
                say(f"list blog/articles/: {keys} at revision {page.revision}")

                events = []
                for event in plane.watch(prefix="blog/", start_revision=first + 1, resume=False):
                    events.append(event)
                    if len(events) == 3:
                        break
                say(
                    f"watch from revision {first + 1}: "
                    + ", ".join(f"{e.type} {e.kv.key}@{e.revision}" for e in events)
                )

                lease = plane.grant(1)
                plane.put("blog/sessions/alice", "logged in", lease=lease)
                say("a 1 s lease holds blog/sessions/alice; no keep-alive is sent ...")
                started = time.monotonic()
                wait_for(lambda: plane.get("blog/sessions/alice") is None, 10, what="expiry")
                say(f"... and the key is gone {time.monotonic() - started:.1f} s later")

                acked = plane.put("blog/articles/4", "written just before the crash")
            print("\n== kill -9, then restart from the WAL")
            server.kill()
            say("SIGKILL sent: no flush, no goodbye")
            server.start().wait_ready()
            with ControlPlane(server.url) as plane:
                kv = plane.get("blog/articles/4")
                assert kv is not None and kv.mod_revision == acked, kv
                total = plane.list("blog/").count
                say(f"restarted: blog/articles/4 is back at revision {kv.mod_revision}")
                say(f"{total} keys under blog/, as before the crash")
            say("every acknowledged write survived")
        finally:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
