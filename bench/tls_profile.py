"""Where a member's CPU goes under TLS: py-spy profiles taken during `bench.security`
runs (`--profile DIR`), and the share of their samples in the TLS machinery.

py-spy (`pip install py-spy`, not a dependency) records each member of the TLS variant
during one extra write run and one extra read run after the trials (py-spy pauses a
process to sample it, so these runs are not in the table), with native frames
(`--native`), as raw folded stacks (`DIR/<run>-<member>.txt`). A sample counts as *TLS
work* when its stack enters uvloop's `SSLProtocol`, CPython's `_ssl` or OpenSSL
(`SSL_*`) and does not go on into the HTTP application (the request handling the plain
variant pays too); of that, the socket
write (`UVStream_write`, paid in plain too) and OpenSSL's own code (`libssl`,
`libcrypto`: records and ciphers) are shown apart.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Share", "recording", "tls_share"]

_TLS_FRAMES = ("SSLProtocol", "_ssl_", "SSL_")
_APP_FRAMES = ("data_received", "HttpToolsProtocol", "RequestResponseCycle")


@dataclass(frozen=True, slots=True)
class Share:
    samples: int
    tls: float  # fractions of all samples
    socket_write: float
    openssl: float
    peer_writes: float  # PeerTransport._write_batch, TLS or not

    def line(self) -> str:
        return (
            f"{self.samples} samples: TLS work {self.tls:.1%} "
            f"(socket write {self.socket_write:.1%}, OpenSSL {self.openssl:.1%}); "
            f"peer-port writes {self.peer_writes:.1%}"
        )


def tls_share(path: Path) -> Share:
    total = tls = write = openssl = peer = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        names = [f.split(" (")[0] for f in frames]
        if any("_write_batch" in f for f in names):
            peer += n
        first = next((i for i, f in enumerate(names) if f.startswith(_TLS_FRAMES)), None)
        if first is None or any(a in f for f in names[first:] for a in _APP_FRAMES):
            continue
        tls += n
        if "UVStream_write" in names[first:]:
            write += n
        if "libssl" in frames[-1] or "libcrypto" in frames[-1]:
            openssl += n
    scale = total or 1
    return Share(total, tls / scale, write / scale, openssl / scale, peer / scale)


@contextmanager
def recording(pids: dict[str, int], seconds: float, out: Path, run: str) -> Iterator[list[Path]]:
    """py-spy on each of `pids` (name -> pid) for `seconds`, while the block runs; the
    profiles' paths (none when py-spy is not installed)."""
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when it is not on PATH
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        yield []
        return
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{run}-{name}.txt" for name in pids}
    procs = [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--duration",
                f"{max(1, int(seconds))}",
                "--native",
                "--format",
                "raw",
                "--output",
                str(paths[name]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    try:
        yield list(paths.values())
    finally:
        for proc in procs:
            try:
                proc.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
