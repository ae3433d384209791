"""shoal: a Python platform for building systems out of many small services.

One ``pip install`` gives a team a replicated control plane (Raft under a revisioned
key-value store), a service registry with health checking, a config center, a service
SDK with client-side load balancing and resilience, and a distributed job engine; see
``docs/architecture.md`` for what exists.

    import shoal
    svc = shoal.Service("articles", app=app)     # FastAPI, Starlette or Flask
    users = svc.client("users")

The names below are imported on first use, so ``import shoal`` stays cheap for the parts
(the Raft simulator, the CLI) that need none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .service import (
        AsyncServiceClient,
        CallError,
        ClientPolicy,
        LiveSettings,
        Service,
        ServiceClient,
    )

_LAZY = {
    "AsyncServiceClient": "shoal.service",
    "CallError": "shoal.service",
    "ClientPolicy": "shoal.service",
    "LiveSettings": "shoal.service",
    "Service": "shoal.service",
    "ServiceClient": "shoal.service",
}

__all__ = [
    "AsyncServiceClient",
    "CallError",
    "ClientPolicy",
    "LiveSettings",
    "Service",
    "ServiceClient",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
