"""`make demo`, the main job, runs end to end: the blog under `shoal up` behind its
gateway, a killed replica and a rolling restart with no failed call through the gateway,
a job on a shoal worker, a clean stop."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_blog_demo_runs_and_no_call_fails() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.blog.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "unknown author: no user 999" in out
    # Every call goes through the gateway, shown as the curl line that makes it.
    gateway = re.search(r"gateway on :(\d+)", out)
    assert gateway is not None, out
    assert f"$ curl -X POST http://127.0.0.1:{gateway[1]}/users " in out
    assert f"curl http://127.0.0.1:{gateway[1]}/users/1/articles" in out
    assert "-> 404 no route" in out
    assert "users-1: 10, users-2: 10" in out
    assert "page_size 5 -> 2" in out
    assert out.count(" 0 failed") == 2
    assert "(right)" in out
    assert "/ui/" in out
    assert "shoal up exited with 0" in out
