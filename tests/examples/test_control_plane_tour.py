"""`make tour`'s second part runs end to end (it starts and kills a real server)."""

from __future__ import annotations

import subprocess
import sys


def test_control_plane_tour_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.control_plane_tour"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every acknowledged write survived" in proc.stdout
    assert "the key is gone" in proc.stdout
