"""Fixtures of the security tests: a development CA on disk and TLS-speaking members."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shoal.security.certs import Authority, init_certs, issue, load_authority, write_cert, write_key
from shoal.testing import ServerProcess, wait_for


@dataclass(frozen=True)
class Pki:
    """The files of `shoal certs init`, plus a way to issue odd certificates."""

    dir: Path
    ca: Path
    member_cert: Path
    member_key: Path
    client_cert: Path
    client_key: Path

    @property
    def authority(self) -> Authority:
        return load_authority(self.ca, self.dir / "ca-key.pem")

    def leaf(
        self, name: str, *, authority: Authority | None = None, expired: bool = False
    ) -> tuple[Path, Path]:
        """A member+client certificate signed by `authority` (default: this CA)."""
        start = dt.datetime.now(dt.UTC) - (dt.timedelta(days=30) if expired else dt.timedelta(0))
        cert, key = issue(
            authority or self.authority, name, not_before=start, days=1 if expired else 30
        )
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"
        write_cert(cert_path, cert)
        write_key(key_path, key)
        return cert_path, key_path

    def client(self, cert: tuple[Path, Path] | None = None, ca: Path | None = None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(ca or self.ca))
        if cert is not None:
            context.load_cert_chain(*map(str, cert))
        return httpx.Client(verify=context, timeout=5)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    issued = init_certs(tmp_path / "certs")
    return Pki(
        tmp_path / "certs",
        issued.ca,
        issued.member_cert,
        issued.member_key,
        issued.client_cert,
        issued.client_key,
    )


@dataclass
class TlsServer(ServerProcess):
    """A `shoal server` with TLS on; its own checks speak HTTPS with the member's cert."""

    ca: Path = field(default=Path())
    cert: Path = field(default=Path())
    key: Path = field(default=Path())
    trust: Path | None = None  # the CA the test's own requests trust (default: `ca`)
    token: str | None = None  # sent as `Authorization: Bearer` by the test's own requests

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    def command(self) -> list[str]:
        tls = ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]
        return super().command() + tls

    def http(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.trust or self.ca))
        if self.trust is None:  # a member signed by another CA would refuse our cert
            context.load_cert_chain(str(self.cert), str(self.key))
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(verify=context, headers=headers, timeout=5)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        with self.http() as client:
            return client.get(self.url + path, **kwargs)  # type: ignore[arg-type]

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        with self.http() as client:
            return client.request(method, self.url + path, **kwargs)  # type: ignore[arg-type]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            return self.get("/healthz").status_code == 200

        wait_for(healthy, timeout, what=f"{self.name} /healthz")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_healthy(timeout)
        wait_for(lambda: self.get("/readyz").status_code == 200, timeout, what="/readyz")


def tls_cluster(
    root: Path, pki: Pki, size: int, extra: list[str] | None = None
) -> dict[str, TlsServer]:
    """`size` TLS members with one initial cluster (not started)."""
    members = {
        f"n{i}": TlsServer(
            f"n{i}",
            root / f"n{i}" / "data",
            extra=list(extra or []),
            ca=pki.ca,
            cert=pki.member_cert,
            key=pki.member_key,
        )
        for i in range(1, size + 1)
    }
    initial = ",".join(f"{m.name}={m.peer_addr}" for m in members.values())
    for m in members.values():
        m.initial_cluster = initial
    return members
