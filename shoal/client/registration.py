"""Keep one instance registered for as long as its process lives (DESIGN.md decision 7).

    holder = RegistrationHolder(acp, "articles", "host-8001", address="10.0.0.5", port=8001)
    task = asyncio.create_task(holder.run())    # registers, then holds the keep-alive stream
    await holder.registered.wait()
    ...
    task.cancel(); await holder.deregister()    # on shutdown: gone at once, not after a TTL

Theory of operation. The instance is attached to a lease of its own (`ttl`, default 10 s)
that the holder keeps alive over the leader's keep-alive stream with `revoke_on_close`: if
the process dies, its connection closes and the leader revokes the lease at once, taking
the instance with it; if the process freezes or is cut off, the lease expires after `ttl`
(plus the instance's active check, if it has one, marks it critical sooner).

The holder never gives up while it runs. A failover reopens the stream on the new
leader, which gave every lease its full TTL; a control plane that is away for longer
than that loses the lease, and the holder grants a new one and registers again when it
is back. Registering again is harmless: the server keeps the instance's health. The lease
id is chosen here, so a retried grant cannot leave a second lease behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from .errors import NotFound, ShoalError
from .http import AsyncControlPlane
from .registry import Registration

__all__ = ["RegistrationHolder"]

log = logging.getLogger("shoal.client.registration")

RETRY_MIN, RETRY_MAX = 0.1, 2.0


class RegistrationHolder:
    """Registers `instance_id` of `service` and keeps it alive until cancelled.

    `fields` are those of `shoal.client.registry.register` (address, port, weight, zone,
    tags, metadata, version, check, deregister_after). `registered` is set once the
    first registration is stored; `current` is the latest stored registration.
    `on_registered(registration)` runs after every (re-)registration. `held` is set while
    the keep-alive stream is open (from its first answer): only then does a dying
    process take its instance with it at once rather than after `ttl`.
    """

    def __init__(
        self,
        cp: AsyncControlPlane,
        service: str,
        instance_id: str,
        *,
        ttl: int = 10,
        on_registered: Callable[[Registration], object] | None = None,
        **fields: Any,
    ) -> None:
        if "lease" in fields:
            raise ValueError("the holder attaches the instance to a lease of its own")
        self.cp, self.service, self.instance_id = cp, service, instance_id
        self.ttl, self.fields, self.on_registered = ttl, dict(fields), on_registered
        self.current: Registration | None = None
        self.registered = asyncio.Event()
        self.held = asyncio.Event()
        self.lease: int | None = None
        self.last_error: ShoalError | None = None

    async def run(self) -> None:
        """Register and hold the keep-alive stream; start over whenever it breaks."""
        delay = RETRY_MIN
        while True:
            self.held.clear()
            try:
                if self.lease is None:
                    self.lease = await self.cp.grant(self.ttl, id=secrets.randbits(62) + 1)
                self.current = await self.cp.registry.register(
                    self.service, self.instance_id, lease=self.lease, **self.fields
                )
                self.registered.set()
                if self.on_registered is not None:
                    self.on_registered(self.current)
                async for _ in self.cp.registry.keepalive_stream(self.lease):
                    self.held.set()
                    delay = RETRY_MIN
            except NotFound:  # the lease expired while we were away: start afresh
                self.lease = None
                continue
            except ShoalError as error:
                if self.last_error is None or error.message != self.last_error.message:
                    log.warning("registration of %s/%s: %s", self.service, self.instance_id, error)
                self.last_error = error
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def deregister(self) -> None:
        """Revoke the lease (the instance goes with it, in one revision) and make sure the
        instance is gone. Best effort: errors are logged, never raised."""
        try:
            if self.lease is not None:
                with contextlib.suppress(NotFound):
                    await self.cp.revoke(self.lease)
                self.lease = None
            await self.cp.registry.deregister(self.service, self.instance_id, missing_ok=True)
        except ShoalError as error:
            log.warning("deregistration of %s/%s: %s", self.service, self.instance_id, error)
