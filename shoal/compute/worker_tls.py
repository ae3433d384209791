"""TLS on the worker port: the ``ssl.SSLContext`` of a ``shoal worker`` and of its drivers.

A worker is given its certificate, its key and a CA (``shoal worker --tls-cert --tls-key
--tls-ca``); a driver is given the CA that signed the workers and, for mutual TLS, a
certificate of its own (``ShoalExecutor(tls=WorkerTls(ca, cert, key))``, else the
``SHOAL_TLS_*`` files every client reads). As on a member's client port, a driver's
certificate is verified when presented and, with ``client_cert_required``, demanded in
the handshake. The driver checks that the worker's certificate names the address it
advertised. TLS 1.2 is the minimum; certificates are always verified.

Workers send no TLS 1.3 session tickets: drivers never resume sessions, and a ticket
arriving alone would make a driver's blocking read wait for the next frame.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from .errors import ExecutorError

__all__ = ["WorkerTls"]

ENV_CA, ENV_CERT, ENV_KEY = "SHOAL_TLS_CA", "SHOAL_TLS_CERT", "SHOAL_TLS_KEY"


@dataclass(frozen=True, slots=True)
class WorkerTls:
    """PEM files for the worker port (see the module doc for which side uses which)."""

    ca: str
    cert: str | None = None
    key: str | None = None
    client_cert_required: bool = False

    @classmethod
    def from_env(cls) -> WorkerTls | None:
        """The client's TLS files (``SHOAL_TLS_CA``/``_CERT``/``_KEY``), if a CA is set."""
        ca = os.environ.get(ENV_CA)
        if not ca:
            return None
        return cls(ca, os.environ.get(ENV_CERT) or None, os.environ.get(ENV_KEY) or None)

    def _context(self, protocol: int) -> ssl.SSLContext:
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=self.ca)
            if self.cert is not None:
                context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as error:
            raise ExecutorError(
                f"cannot load the TLS files (ca {self.ca}, cert {self.cert}, key {self.key}): "
                f"{error}"
            ) from None
        return context

    def server_context(self) -> ssl.SSLContext:
        """The worker's: its certificate; drivers' certificates checked against the CA."""
        if self.cert is None:
            raise ExecutorError("a worker's TLS needs a certificate and its key (--tls-cert)")
        context = self._context(ssl.PROTOCOL_TLS_SERVER)
        context.verify_mode = ssl.CERT_REQUIRED if self.client_cert_required else ssl.CERT_OPTIONAL
        context.num_tickets = 0  # see the module doc
        return context

    def client_context(self) -> ssl.SSLContext:
        """A driver's: the worker's certificate checked against the CA and the address."""
        context = self._context(ssl.PROTOCOL_TLS_CLIENT)
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        return context
