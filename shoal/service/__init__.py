"""The service SDK: turn a FastAPI, Starlette or Flask app into a shoal service, and call
other services by name with client-side balancing and resilience.

    svc = shoal.Service("articles", app=app)
    users = svc.client("users")
    author = await users.get(f"/users/{id}")

See `service.py` (the lifecycle), `client.py` (calls), `policy.py` (how calls are made),
`config.py` (hot-reloaded settings) and docs/sdk.md.
"""

from .client import AsyncServiceClient, ServiceClient
from .config import LiveSettings
from .errors import CallError, CallFailed, CallTimeout, NoInstance
from .policy import ClientPolicy, PolicyError
from .service import Service

__all__ = [
    "AsyncServiceClient",
    "CallError",
    "CallFailed",
    "CallTimeout",
    "ClientPolicy",
    "LiveSettings",
    "NoInstance",
    "PolicyError",
    "Service",
    "ServiceClient",
]
