"""TLS settings of a member and the `ssl.SSLContext`s made from them.

Theory of operation. A member is given three PEM files: its certificate, its key and the
CA that signs every member (and client) of the cluster. From them come three contexts:

- `api_server()`: the client port (HTTPS). Client certificates are verified against the
  CA when presented and, with `client_cert_required`, demanded (mTLS for clients).
- `peer_server()` / `peer_client()`: the Raft peer port. Always mutual: a member accepts
  a peer connection only from a certificate signed by the CA, and dials only a peer whose
  certificate is signed by the CA and names the address dialled. So a member holding a
  certificate from any other CA can neither join nor receive traffic.
- `peer_client()` is also the context of the member's own HTTPS calls to other members
  (forwarding writes to the leader, health writes, address records), presenting the
  member certificate, which is why `shoal certs init` marks it for client auth too.

Rules it keeps: TLS 1.2 is the minimum everywhere; certificates are always verified (no
`CERT_NONE` path exists here); the files are read once, at start, so a bad path or a key
that does not match its certificate stops the member with a message naming the file.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_VERSION = ssl.TLSVersion.TLSv1_2


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable, or does not fit with the others."""


@dataclass(frozen=True, slots=True)
class MemberTls:
    """The TLS files of a member (see the module docstring for what each context does)."""

    cert: Path
    key: Path
    ca: Path
    client_cert_required: bool = False

    def _load(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        server = purpose is ssl.Purpose.CLIENT_AUTH
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = MIN_VERSION
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigError(
                f"cannot load the certificate {self.cert} with the key {self.key}: {error}"
            ) from None
        try:
            context.load_verify_locations(cafile=self.ca)
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigError(f"cannot load the CA file {self.ca}: {error}") from None
        return context

    def api_server(self) -> ssl.SSLContext:
        context = self._load(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED if self.client_cert_required else ssl.CERT_OPTIONAL
        return context

    def peer_server(self) -> ssl.SSLContext:
        context = self._load(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def peer_client(self) -> ssl.SSLContext:
        context = self._load(ssl.Purpose.SERVER_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        return context

    def check(self) -> None:
        """Load every context once, so a bad file fails at start, not on first traffic."""
        self.api_server()
        self.peer_server()
        self.peer_client()


def outbound_verify(tls: MemberTls | None) -> ssl.SSLContext | bool:
    """httpx's `verify=` for a member's own calls to other members: the peer context
    (member certificate presented, CA checked) under TLS, else httpx's default."""
    return tls.peer_client() if tls is not None else True


def uvicorn_options(tls: MemberTls | None) -> dict[str, Any]:
    """Extra `uvicorn.Config` arguments that serve the API over TLS (none without it)."""
    if tls is None:
        return {}
    context = tls.api_server()
    return {"ssl_context_factory": lambda _config, _default: context}


__all__ = ["MIN_VERSION", "MemberTls", "TlsConfigError", "outbound_verify", "uvicorn_options"]
