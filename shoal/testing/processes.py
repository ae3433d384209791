"""Real `shoal server` processes on loopback for tests: start, wait, kill -9, restart.

Every process is tracked by PID and killed on exit, even when a test fails half-way.
Ports come from the kernel (bind to port 0), so parallel test runs do not collide.

Secured members use the same harness: `tls=ServerTls(ca, cert, key)` starts a member
with `--tls-*` (its URL is https, and the harness's own requests trust the CA and present
the member certificate), `token="..."` starts it with `--acl` and, once it is ready,
bootstraps the cluster's ACLs with that secret (or checks the secret works, when the
cluster was bootstrapped already), so every request the harness makes carries it.
`env()` is what a child process (a service, a worker) needs to reach the member.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


_handed_out: set[int] = set()
_ports = random.Random()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port nobody listens on, never the same one twice in this process.

    Chosen below the kernel's ephemeral range: a port from bind(0) is one the kernel also
    hands out as the local port of outgoing connections, so between this call and the
    server's own bind, any process making connections could take it (seen as "address
    already in use" on a loaded machine). Below the range only another picker like this
    one could, and it checks that the port is free too.
    """
    low, _ = _ephemeral_range()
    top = max(low, 12_000)
    for _ in range(1000):
        port = _ports.randrange(10_000, top)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found below the ephemeral range")


def wait_for(
    condition: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (httpx.HTTPError, OSError, KeyError, ValueError) as error:
            last_error, value = error, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}: {last_error}")


@dataclass(frozen=True)
class ServerTls:
    """The PEM files of a TLS member (`shoal certs init` makes them). `trust` is the CA the
    harness's own requests trust (default `ca`); given one, they present no certificate
    (a member signed by another CA would refuse ours)."""

    ca: Path
    cert: Path
    key: Path
    trust: Path | None = None

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.trust or self.ca))
        if self.trust is None:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context


@dataclass
class ServerProcess:
    name: str
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    initial_cluster: str | None = None
    join: str | None = None
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    tls: ServerTls | None = None
    token: str | None = None  # ACLs on; the bootstrap secret, sent by every request here

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_addr(self) -> str:
        return f"127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "shoal.cli.main", "server",
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--client-addr", f"127.0.0.1:{self.client_port}",
            "--peer-addr", self.peer_addr,
        ]  # fmt: skip
        if self.initial_cluster:
            cmd += ["--initial-cluster", self.initial_cluster]
        if self.join:
            cmd += ["--join", self.join]
        if self.tls is not None:
            tls = self.tls
            cmd += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--tls-ca", str(tls.ca)]
        if self.token is not None and "--acl" not in self.extra:
            cmd.append("--acl")
        return cmd + self.extra

    def http(self, timeout: float = 5.0) -> httpx.Client:
        """A client of this member as the harness speaks to it (its TLS, its token)."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        verify: ssl.SSLContext | bool = self.tls.client_context() if self.tls else True
        return httpx.Client(verify=verify, headers=headers, timeout=timeout)

    def env(self) -> dict[str, str]:
        """Environment variables that let a child process's SDK client reach this member."""
        env = {"SHOAL_ENDPOINTS": self.url}
        if self.token:
            env["SHOAL_TOKEN"] = self.token
        if self.tls is not None:
            env["SHOAL_TLS_CA"] = str(self.tls.trust or self.tls.ca)
            if self.tls.trust is None:
                env["SHOAL_TLS_CERT"], env["SHOAL_TLS_KEY"] = str(self.tls.cert), str(self.tls.key)
        return env

    def token_works(self) -> bool:
        return self.get("/api/v1/acl/token/self").status_code == 200

    def bootstrap(self, timeout: float = 30.0) -> None:
        """Make `token` the cluster's management token (ACL bootstrap), or check that it is
        already: a cluster bootstrapped with another secret is an error, not a hang."""
        assert self.token is not None
        refused: list[int] = []  # 401s after a 409: another token, or a member catching up

        def done() -> bool:
            with self.http() as client:
                answer = client.post(self.url + "/api/v1/acl/bootstrap", json={"token": self.token})
                if answer.status_code == 409:
                    mine = client.get(self.url + "/api/v1/acl/token/self")
                    if mine.status_code == 401:
                        refused.append(401)
                    return mine.status_code == 200
                if answer.status_code == 400:
                    raise RuntimeError(f"{self.name}: bootstrap refused: {answer.text}")
                return answer.status_code == 200

        try:
            wait_for(done, timeout, what=f"{self.name} ACL bootstrap")
        except TimeoutError:
            if refused:
                raise RuntimeError(f"{self.name}: bootstrapped with another token") from None
            raise

    def start(self) -> ServerProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            return self.get("/healthz", timeout=1).status_code == 200

        wait_for(healthy, timeout, what=f"{self.name} /healthz")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Healthy, ready (a leader known) and, with a token, the ACLs bootstrapped."""
        self.wait_healthy(timeout)
        wait_for(
            lambda: self.get("/readyz", timeout=1).status_code == 200,
            timeout,
            what=f"{self.name} /readyz",
        )
        if self.token is not None:
            self.bootstrap(timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.http(kwargs.pop("timeout", 5)) as client:
            return client.request(method, self.url + path, **kwargs)


class LocalCluster:
    """N members with an initial cluster, or members added one by one with `join`.
    With `tls` and `token` every member is secured (see the module doc); `start()` then
    also bootstraps the cluster's ACLs with `token`."""

    def __init__(
        self,
        root: Path,
        size: int,
        extra: list[str] | None = None,
        *,
        tls: ServerTls | None = None,
        token: str | None = None,
    ) -> None:
        self.root = root
        self.members: dict[str, ServerProcess] = {}
        names = [f"n{i}" for i in range(1, size + 1)]
        procs = [
            ServerProcess(n, root / n / "data", extra=list(extra or []), tls=tls, token=token)
            for n in names
        ]
        initial = ",".join(f"{p.name}={p.peer_addr}" for p in procs)
        for p in procs:
            p.initial_cluster = initial
            self.members[p.name] = p

    def start(self) -> LocalCluster:
        for p in self.members.values():
            p.start()
        for p in self.members.values():
            p.wait_healthy()
        secured = [p for p in self.members.values() if p.token is not None]
        if secured:
            secured[0].bootstrap()
            for p in secured[1:]:  # the token reaches each member's copy a round-trip later
                wait_for(p.token_works, 30, what=f"the token on {p.name}")
        return self

    def stop(self) -> None:
        for p in self.members.values():
            with contextlib.suppress(Exception):
                p.kill()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def live(self) -> list[ServerProcess]:
        return [p for p in self.members.values() if p.alive]

    def leader(self, timeout: float = 30.0) -> ServerProcess:
        """The member every live member agrees leads (and that says so itself)."""

        def agreed() -> ServerProcess | None:
            views = {p.get("/api/v1/cluster", timeout=1).json()["leader"] for p in self.live()}
            if len(views) != 1:
                return None
            name = views.pop()
            if name is None or name not in self.members or not self.members[name].alive:
                return None
            status = self.members[name].get("/api/v1/cluster", timeout=1).json()
            return self.members[name] if status["role"] == "leader" else None

        return wait_for(agreed, timeout, what="an agreed leader")

    def endpoints(self) -> list[str]:
        return [p.url for p in self.members.values()]


@contextlib.contextmanager
def local_cluster(
    root: Path,
    size: int,
    extra: list[str] | None = None,
    *,
    tls: ServerTls | None = None,
    token: str | None = None,
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root, size, extra, tls=tls, token=token)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
