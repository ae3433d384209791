"""The web dashboard that every member serves at `/ui`.

    from shoal.dashboard import dashboard_app
    mounts = {"/ui": dashboard_app("http://127.0.0.1:7700")}   # the member's own API

Theory of operation: the pages are static HTML with small vanilla ES modules
(`static/`), no framework and no build step, so nothing outside the package registries
is needed and nothing is fetched from the internet. The browser talks to the member's
own HTTP API (`/api/v1/...`): every read, every write (deregister, change a weight,
publish, roll back, put a key) goes through the same endpoints, validation and errors as
any client, and pages stay live by following the API's watch streams (Server-Sent
Events) from the revision they listed at.

The dashboard's own endpoints (`/ui/api/...`, `app.py`) only gather what no single
member answers: every member's view of the cluster (sampled, one sampler per process
shared by every open page, `cluster.py`) and every member's health checks. They are
read-only and reach the members through the public API as well.
"""

from .app import dashboard_app

__all__ = ["dashboard_app"]
