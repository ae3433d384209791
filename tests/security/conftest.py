"""Fixtures of the security tests: a development CA on disk and TLS-speaking members
(`shoal.testing.ServerProcess` with `tls=`)."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shoal.security.certs import Authority, init_certs, issue, load_authority, write_cert, write_key
from shoal.testing import LocalCluster, ServerProcess, ServerTls


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

    @property
    def server_tls(self) -> ServerTls:
        return ServerTls(self.ca, self.member_cert, self.member_key)

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


def tls_cluster(
    root: Path, pki: Pki, size: int, extra: list[str] | None = None
) -> dict[str, ServerProcess]:
    """`size` TLS members with one initial cluster (not started)."""
    return dict(LocalCluster(root, size, extra, tls=pki.server_tls).members)
