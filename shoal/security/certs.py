"""A local certificate authority for development: `shoal certs init`.

Theory of operation. `init_certs(dir)` makes a self-signed CA (`ca.pem`, `ca-key.pem`) and
signs with it one member certificate (`member.pem`, `member-key.pem`) and one client
certificate (`client.pem`, `client-key.pem`). Every leaf carries subject alternative names
for `localhost`, `127.0.0.1` and `::1` (plus any `hosts` given), so the same member
certificate serves the client port, the peer port and the member's own calls to other
members; it is marked for both server and client authentication, because members dial
each other (mTLS). Keys are ECDSA P-256: small, fast to handshake, accepted everywhere.

Rules it keeps:
1. Private keys are written mode 0600, never logged.
2. An existing CA is reused, not replaced: re-running `init` adds leaves signed by the CA
   the cluster already trusts. `force=True` replaces everything.
3. Validity is explicit (`not_before`, `days`), so tests can make an expired certificate
   with the same code that makes a good one.

This is for development and tests. Production clusters should use their own PKI; the
member only needs PEM files (see docs/security.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_DAYS = 365


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA's certificate and key, able to sign leaves."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Issued:
    """Where `init_certs` wrote each file."""

    ca: Path
    ca_key: Path
    member_cert: Path
    member_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shoal"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_authority(
    common_name: str = "shoal development CA",
    *,
    not_before: dt.datetime | None = None,
    days: int = DEFAULT_DAYS * 10,
) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(minutes=5)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue(
    ca: Authority,
    common_name: str,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    server: bool = True,
    client: bool = True,
    not_before: dt.datetime | None = None,
    days: int = DEFAULT_DAYS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by `ca` for `hosts`, usable as a server and/or client."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(minutes=5)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start: never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_authority(cert_path: Path, key_path: Path) -> Authority:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: not an EC private key (shoal's CA uses P-256)")
    return Authority(cert, key)


def init_certs(
    directory: Path,
    *,
    hosts: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> Issued:
    """Write (or reuse) the CA in `directory` and issue a member and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    issued = Issued(
        ca=directory / "ca.pem",
        ca_key=directory / "ca-key.pem",
        member_cert=directory / "member.pem",
        member_key=directory / "member-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    if issued.ca.exists() and issued.ca_key.exists() and not force:
        ca = load_authority(issued.ca, issued.ca_key)
    else:
        ca = new_authority()
        write_cert(issued.ca, ca.cert)
        write_key(issued.ca_key, ca.key)
    all_hosts = (*DEFAULT_HOSTS, *hosts)
    cert, key = issue(ca, "shoal member", hosts=all_hosts, days=days)
    write_cert(issued.member_cert, cert)
    write_key(issued.member_key, key)
    cert, key = issue(ca, "shoal client", hosts=(), server=False, days=days)
    write_cert(issued.client_cert, cert)
    write_key(issued.client_key, key)
    return issued


__all__ = [
    "Authority",
    "Issued",
    "init_certs",
    "issue",
    "load_authority",
    "new_authority",
    "write_cert",
    "write_key",
]
