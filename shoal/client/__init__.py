"""`shoal.client`: talk to the control plane over HTTP (KV, leases, watches, cluster).

    from shoal.client import ControlPlane
    with ControlPlane("http://127.0.0.1:7700") as cp:
        cp.put("greeting", "hello")
        print(cp.get("greeting"))

`AsyncControlPlane` has the same methods, awaited. `ConfigSubscription` follows a config
item for a service (hot reload); see `shoal.client.config`. Errors form one tree rooted at
`ShoalError` (see `shoal.client.errors`).
"""

from __future__ import annotations

from .config import ConfigSubscription, ConfigUpdate, watch_config, watch_config_async
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
    "KeyValue",
    "LeaseTimeToLive",
    "NotFound",
    "Page",
    "ShoalError",
    "Unavailable",
    "WatchClosed",
    "WatchCompacted",
    "parse_endpoints",
    "watch_config",
    "watch_config_async",
]
