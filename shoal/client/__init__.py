"""`shoal.client`: talk to the control plane over HTTP (KV, leases, watches, cluster).

    from shoal.client import ControlPlane
    with ControlPlane("http://127.0.0.1:7700") as cp:
        cp.put("greeting", "hello")
        print(cp.get("greeting"))

`AsyncControlPlane` has the same methods, awaited. The registry's and the config
center's calls are `cp.registry.*` and `cp.config.*` (see `shoal.client.registry` and
`shoal.client.config`). For a service's own needs: `RegistrationHolder` keeps an instance
registered over the keep-alive stream, `ServiceView` is a watched local view of the
instances of a service it calls, and `ConfigSubscription` follows a config item (hot
reload). Errors form one tree rooted at `ShoalError` (see `shoal.client.errors`).
"""

from __future__ import annotations

from .config import ConfigSubscription, ConfigUpdate, watch_config, watch_config_async
from .discovery import ServiceSnapshot, ServiceView
from .errors import (
    BadRequest,
    Compacted,
    NotFound,
    ShoalError,
    Unavailable,
    WatchClosed,
    WatchCompacted,
)
from .http import AsyncControlPlane, ControlPlane
from .protocol import parse_endpoints
from .registration import RegistrationHolder
from .registry import InstanceEvent, Registration, ServiceInstances, Services
from .types import ClusterMember, ClusterStatus, Event, KeyValue, LeaseTimeToLive, Page

__all__ = [
    "AsyncControlPlane",
    "BadRequest",
    "ClusterMember",
    "ClusterStatus",
    "Compacted",
    "ConfigSubscription",
    "ConfigUpdate",
    "ControlPlane",
    "Event",
    "InstanceEvent",
    "KeyValue",
    "LeaseTimeToLive",
    "NotFound",
    "Page",
    "Registration",
    "RegistrationHolder",
    "ServiceInstances",
    "ServiceSnapshot",
    "ServiceView",
    "Services",
    "ShoalError",
    "Unavailable",
    "WatchClosed",
    "WatchCompacted",
    "parse_endpoints",
    "watch_config",
    "watch_config_async",
]
