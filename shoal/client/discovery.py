"""A watched, in-memory view of one service's instances (DESIGN.md decision 6).

    view = ServiceView(acp, "users")
    task = asyncio.create_task(view.run())      # list, then watch; for ever
    snapshot = view.wait(timeout=5)             # from any thread
    found = snapshot.select(InstanceFilter(healthy=True))

Theory of operation: the Kubernetes informer. `run` lists the service's keys (instances
and settings) at one revision R, publishes a snapshot, then watches the prefix from R + 1
and publishes a new snapshot after every event. A dropped watch resumes from the last
revision (the client's `WatchCursor`); history compacted away means a fresh list. When the
control plane cannot be reached, the last snapshot stays in place -- traffic keeps flowing
on the last view -- while `run` retries with backoff for as long as it runs.

Snapshots are immutable and replaced whole, so readers on other threads (a Flask
request, a balancer update) never see a half-applied change and need no lock. Listeners
run on the view's event loop after each change; they must be quick.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..registry import (
    Discovery,
    Instance,
    InstanceFilter,
    RegistryError,
    ServiceSettings,
    discover,
    parse_instance_key,
    service_prefix,
    settings_key,
)
from .errors import ShoalError, WatchCompacted
from .http import AsyncControlPlane
from .types import KeyValue

__all__ = ["ServiceSnapshot", "ServiceView"]

log = logging.getLogger("shoal.client.discovery")

RETRY_MIN, RETRY_MAX = 0.1, 2.0


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """Every stored instance of a service (sorted by id) and its settings, at `revision`."""

    service: str
    revision: int
    instances: tuple[Instance, ...]
    settings: ServiceSettings

    def select(self, query: InstanceFilter) -> Discovery:
        """What discovery with `query` would answer, protect threshold included."""
        return discover(self.instances, query, self.settings.protect_threshold)


Listener = Callable[[ServiceSnapshot], object]


class ServiceView:
    """The live view of one service; see the module docstring."""

    def __init__(self, cp: AsyncControlPlane, service: str, *, page_size: int = 1000) -> None:
        self.cp, self.service, self.page_size = cp, service, page_size
        self.prefix = service_prefix(service)  # validates the name
        self._settings_key = settings_key(service)
        self.snapshot: ServiceSnapshot | None = None
        self.connected = False
        self.last_error: ShoalError | None = None
        self._instances: dict[str, Instance] = {}
        self._settings = ServiceSettings()
        self._listeners: list[Listener] = []
        self._ready = threading.Event()

    # -- readers (any thread) ----------------------------------------------------------

    def wait(self, timeout: float) -> ServiceSnapshot:
        """The current snapshot, waiting up to `timeout` s for the first; TimeoutError."""
        if not self._ready.wait(timeout):
            reason = f": {self.last_error}" if self.last_error else ""
            raise TimeoutError(f"no view of service {self.service!r} within {timeout} s{reason}")
        assert self.snapshot is not None
        return self.snapshot

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(snapshot)` after every change (and now, if there is a snapshot);
        returns the function that unsubscribes it."""
        self._listeners.append(listener)
        if self.snapshot is not None:
            listener(self.snapshot)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch, for as long as the task runs (cancel it to stop)."""
        delay = RETRY_MIN
        while True:
            try:
                revision = await self._list()
                delay = RETRY_MIN
                async for event in self.cp.watch(prefix=self.prefix, start_revision=revision + 1):
                    self._apply(event.kv, deleted=event.type == "delete")
                    self._publish(event.revision)
            except WatchCompacted:
                continue  # the history we would resume from is gone: list afresh
            except ShoalError as error:
                self.connected, self.last_error = False, error
                log.warning("view of %s: %s (keeping the last one)", self.service, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _list(self) -> int:
        instances: dict[str, Instance] = {}
        self._instances, self._settings = instances, ServiceSettings()
        revision = 0
        async for page in self.cp.pages(self.prefix, self.page_size):
            revision = page.revision
            for kv in page.kvs:
                self._apply(kv, deleted=False)
        # An empty prefix still tells the revision the listing reflects.
        if revision == 0:
            revision = (await self.cp.list(self.prefix, limit=1)).revision
        self.connected, self.last_error = True, None
        self._publish(revision)
        return revision

    def _apply(self, kv: KeyValue, *, deleted: bool) -> None:
        if kv.key == self._settings_key:
            self._settings = ServiceSettings() if deleted else _settings(kv)
            return
        parsed = parse_instance_key(kv.key)
        if parsed is None or parsed[0] != self.service:
            return
        if deleted:
            self._instances.pop(parsed[1], None)
            return
        try:
            self._instances[parsed[1]] = Instance.from_json(json.loads(kv.value))
        except (RegistryError, ValueError, TypeError) as error:
            # A record a newer server wrote in a shape this client cannot read: skip it
            # rather than stop following the service.
            log.warning("skipping unreadable instance %s: %s", kv.key, error)
            self._instances.pop(parsed[1], None)

    def _publish(self, revision: int) -> None:
        ordered = tuple(self._instances[k] for k in sorted(self._instances))
        self.snapshot = ServiceSnapshot(self.service, revision, ordered, self._settings)
        self._ready.set()
        for listener in list(self._listeners):
            try:
                listener(self.snapshot)
            except Exception:  # one bad listener must not stop the view
                log.exception("listener of the view of %s failed", self.service)


def _settings(kv: KeyValue) -> ServiceSettings:
    try:
        return ServiceSettings.from_json(json.loads(kv.value))
    except (RegistryError, ValueError):
        return ServiceSettings()
