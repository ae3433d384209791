"""`shoal.Service`: one line turns a FastAPI, Starlette or Flask app into a shoal service.

    app = FastAPI()                      # or Flask(__name__)
    svc = shoal.Service("articles", app=app)
    users = svc.client("users")          # async for ASGI apps, blocking for WSGI apps

Theory of operation (nothing else in the app changes; any server runs it):

1. Construction attaches the middleware (health, metrics, trace context, in-flight
   count) and starts the process's agent thread (`agent.py`). The agent waits until
   the process really listens -- it asks the operating system (`address.py`) -- and then
   registers the instance with that address and port, on a lease held over the
   keep-alive stream (a process that dies is gone at once) and, by default, with an HTTP
   check of `/healthz` by the control plane (a process that hangs is marked critical).
2. While it runs, calls to other services go through clients (`client.py`) that balance
   over a watched local view of the callee's instances, with retries, budgets, circuit
   breakers and outlier ejection; config items are followed with hot reload (`config.py`).
3. On SIGTERM (`signals.py`): /healthz turns 503, the instance is deregistered, callers
   get `shutdown_grace` seconds to see that, then the server stops accepting and drains
   the requests in flight (at most `drain_timeout`), then the process exits. The same
   stop runs at the ASGI lifespan shutdown and at interpreter exit, whichever comes first.

Defaults follow the systems operators know: a 10 s lease (Nacos marks a client unhealthy
after 15 s of silence, Consul's TTL checks are commonly 10-30 s; with the keep-alive
stream a dead process goes at once anyway), an HTTP check every 5 s that fails after 2
misses (Consul's checks are typically 10 s; halved because client-side outlier ejection
already reacts within a few requests), 1 s of grace between deregistering and stopping
(the registry's watchers see a deregistration in milliseconds; Kubernetes users commonly
sleep 5-15 s because kube-proxy is slower), and 30 s to drain (Kubernetes'
terminationGracePeriodSeconds and gunicorn's graceful timeout).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from ..client import ConfigUpdate
from ..client.registry import Registration
from ..events import Handler, Published, SubscribeOptions
from ..observe.logs import setup_logging
from ..registry import RegistryError, check_name
from . import address as addr
from .agent import Agent
from .client import AsyncServiceClient, CallCore, ServiceClient
from .config import LiveSettings
from .events import ServiceEvents
from .middleware import ROUTE_KEY, AsgiMiddleware, RequestGate, WsgiMiddleware
from .policy import ClientPolicy
from .signals import SigtermHook

__all__ = ["Service"]

log = logging.getLogger("shoal.service")

T = TypeVar("T")
DEFAULT_ENDPOINTS = "http://127.0.0.1:7700"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

State = Literal["starting", "serving", "draining", "stopped"]


class Service:
    """A registered service: see the module docstring."""

    def __init__(
        self,
        name: str,
        app: Any = None,
        *,
        endpoints: str | Sequence[str] | None = None,
        instance_id: str | None = None,
        address: str | None = None,
        port: int | None = None,
        zone: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        version: str = "",
        weight: float = 1.0,
        labels: Mapping[str, str] | None = None,
        check: Literal["http", "none"] = "http",
        check_interval: str = "5s",
        lease_ttl: int = 10,
        health_path: str = "/healthz",
        metrics_path: str = "/metrics",
        shutdown_grace: float = 1.0,
        drain_timeout: float = 30.0,
        config_namespace: str | None = None,
        register: bool = True,
    ) -> None:
        try:
            self.name = check_name(name, "service")
        except RegistryError as error:
            raise ValueError(str(error)) from None
        env = os.environ
        raw = endpoints if endpoints is not None else env.get("SHOAL_ENDPOINTS", DEFAULT_ENDPOINTS)
        self.instance_id = instance_id or env.get("SHOAL_INSTANCE_ID") or None
        self.address, self.port = address, port
        self.zone = zone if zone is not None else env.get("SHOAL_ZONE", "")
        self.tags, self.version, self.weight = tuple(tags), version, weight
        self.metadata = dict(metadata or {})
        self.labels = {"service": self.name, "zone": self.zone, "version": version}
        self.labels.update(labels or {})
        self.check, self.check_interval, self.lease_ttl = check, check_interval, lease_ttl
        self.health_path, self.metrics_path = health_path, metrics_path
        self.shutdown_grace, self.drain_timeout = shutdown_grace, drain_timeout
        self.config_namespace = config_namespace or env.get("SHOAL_NAMESPACE", "default")
        # shoal's one log format, trace ids included; an app's own logging setup is kept.
        setup_logging(self.name, respect_existing=True)
        self.state: State = "starting"
        self.registration: Registration | None = None
        self.registered = threading.Event()
        self.gate = RequestGate(self)
        self._stop_lock = threading.Lock()
        self._cores: dict[str, CallCore] = {}
        self._kind: Literal["asgi", "wsgi", "none"] = "none"
        self.app = app
        if app is not None:
            self._attach(app)
        self.agent = Agent(raw if isinstance(raw, str) else tuple(raw))
        self._registers = register
        self._holder: Any = None
        self._events: ServiceEvents | None = None
        self._events_lock = threading.Lock()
        if register:
            self.agent.spawn(self._register_when_listening(), f"registration of {self.name}")
        self._sigterm = SigtermHook(self._prepare_stop)
        self._sigterm.install()
        atexit.register(self._at_exit)

    # -- attaching to the app ----------------------------------------------------------

    @property
    def is_asgi(self) -> bool:
        return self._kind == "asgi"

    def _attach(self, app: Any) -> None:
        if hasattr(app, "wsgi_app") and hasattr(app, "before_request"):  # Flask
            app.wsgi_app = WsgiMiddleware(app.wsgi_app, self)
            app.before_request(_flask_route_hook)
            self._kind = "wsgi"
        elif hasattr(app, "add_middleware") and hasattr(app, "router"):  # Starlette, FastAPI
            app.add_middleware(AsgiMiddleware, service=self)
            self._kind = "asgi"
        else:
            raise TypeError(
                f"shoal.Service attaches to FastAPI, Starlette or Flask apps, not "
                f"{type(app).__name__}; for another ASGI or WSGI app, give app=None and "
                f"wrap it with svc.asgi(app) or svc.wsgi(app)"
            )

    def asgi(self, app: Any) -> AsgiMiddleware:
        """Wrap any ASGI app (serve what this returns)."""
        self._kind = "asgi"
        return AsgiMiddleware(app, self)

    def wsgi(self, app: Any) -> WsgiMiddleware:
        """Wrap any WSGI app (serve what this returns)."""
        self._kind = "wsgi"
        return WsgiMiddleware(app, self)

    # -- calling other services --------------------------------------------------------

    def _core(self, service: str, policy: ClientPolicy | None, policy_item: str | None) -> CallCore:
        core = self._cores.get(service)
        if core is None or policy is not None or policy_item is not None:
            core = CallCore(
                service,
                agent=self.agent,
                policy=policy,
                policy_item=self._item(policy_item) if policy_item else None,
                local_zone=self.zone,
            )
            self._cores.setdefault(service, core)
        return core

    def client(
        self,
        service: str,
        *,
        policy: ClientPolicy | None = None,
        policy_item: str | None = None,
    ) -> Any:
        """A client for `service`: `AsyncServiceClient` in an ASGI app, `ServiceClient`
        in a WSGI app (or without one). `policy` sets balancing, timeouts, retries and
        breakers in code; `policy_item` names a config item holding them (hot-reloaded)."""
        if self._kind == "asgi":
            return self.async_client(service, policy=policy, policy_item=policy_item)
        return self.sync_client(service, policy=policy, policy_item=policy_item)

    def sync_client(
        self, service: str, *, policy: ClientPolicy | None = None, policy_item: str | None = None
    ) -> ServiceClient:
        return ServiceClient(service, core=self._core(service, policy, policy_item))

    def async_client(
        self, service: str, *, policy: ClientPolicy | None = None, policy_item: str | None = None
    ) -> AsyncServiceClient:
        return AsyncServiceClient(service, core=self._core(service, policy, policy_item))

    # -- configuration -----------------------------------------------------------------

    def _item(self, item: str) -> str:
        return item if "/" in item else f"{self.config_namespace}/{item}"

    def on_config(
        self, item: str, *, labels: Mapping[str, str] | None = None
    ) -> Callable[[Callable[[Any], object]], Callable[[Any], object]]:
        """Decorator: call `fn(value)` with the parsed content of `item` now and after
        every change (hot reload). `item` is `NAMESPACE/NAME`, or a name in the
        service's `config_namespace`. The instance's labels (service, zone, version and
        `labels`) pick a gray-release beta when its selector matches."""

        def register(fn: Callable[[Any], object]) -> Callable[[Any], object]:
            def deliver(update: ConfigUpdate) -> None:
                if not update.deleted:
                    fn(update.value)

            self.agent.follow_config(self._item(item), {**self.labels, **(labels or {})}, deliver)
            return fn

        return register

    def settings(self, item: str, model: Callable[..., T]) -> LiveSettings[T]:
        """A live, typed view of `item`: `.value` is the latest content that `model`
        (a pydantic model, a dataclass, or a callable) accepts. See config.py."""
        live: LiveSettings[T] = LiveSettings(self._item(item), model)
        self.agent.follow_config(live.item, self.labels, live.accept)
        return live

    # -- events ------------------------------------------------------------------------

    def _event_side(self) -> ServiceEvents:
        with self._events_lock:
            if self._events is None:
                url = os.environ.get("SHOAL_EVENTS_URL") or list(self.agent.endpoints)
                self._events = ServiceEvents(self.agent, url, self.name)
                if self.registered.is_set() or not self._registers:
                    self._events.start()
            return self._events

    def on_event(
        self, topic: str, *, group: str | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Decorator: run `fn(message)` for the messages of `topic` (see events.py) --
        each to one instance of `group`, or, without a group, every message to every
        instance. Returning acknowledges; `shoal.events.Nack(delay=)` or any exception
        redelivers. `options` are `shoal.events.SubscribeOptions` fields. Subscriptions
        start once the instance is registered and drain on SIGTERM."""
        settings = SubscribeOptions(**options)

        def register(fn: Handler) -> Handler:
            self._event_side().add(topic, fn, group, settings)
            return fn

        return register

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        id: str | None = None,
        timeout: float | None = 30.0,
    ) -> Published:
        """Publish and wait until it is durable (blocking: for Flask and threads; from a
        coroutine use `apublish`). The current trace context goes in the headers."""
        return self._event_side().publish(topic, payload, key, headers, id=id, timeout=timeout)

    async def apublish(
        self,
        topic: str,
        payload: bytes | str,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        id: str | None = None,
    ) -> Published:
        """`publish` for coroutines (FastAPI handlers, async event handlers)."""
        return await self._event_side().apublish(topic, payload, key, headers, id=id)

    def _stop_events(self) -> None:
        with self._events_lock:
            events = self._events
        if events is not None:
            events.stop(self.drain_timeout)

    # -- registration ------------------------------------------------------------------

    async def _register_when_listening(self) -> None:
        delay, waited = 0.02, 0.0
        while True:
            found = addr.listeners()
            chosen = _choose(found, self.port)
            if chosen is not None:
                break
            await asyncio.sleep(delay)
            waited += delay
            if waited > 2.0:
                delay = min(delay * 2, 1.0)
        if len(found) > 1 and self.port is None:
            log.warning(
                "%s listens on %s; registering port %d (pass port= to choose)",
                self.name,
                ", ".join(f"{x.host}:{x.port}" for x in found),
                chosen.port,
            )
        host = self.address or addr.advertise_host(chosen.host, self.agent.endpoints[0])
        self.port = chosen.port
        self.address = host
        if self.instance_id is None:
            self.instance_id = _UNSAFE.sub("-", f"{host}-{chosen.port}-{os.getpid()}")
        fields: dict[str, Any] = {
            "address": host,
            "port": chosen.port,
            "weight": self.weight,
            "zone": self.zone,
            "tags": self.tags,
            "metadata": {"pid": str(os.getpid()), **self.metadata},
            "version": self.version,
        }
        if self.check == "http":
            fields["check"] = {
                "type": "http",
                "path": self.health_path,
                "interval": self.check_interval,
                "fall": 2,
                "rise": 1,
            }
        with self._stop_lock:
            if self.state != "starting":
                return  # stopped before it ever listened
            self._holder = self.agent.hold(
                self.name,
                self.instance_id,
                ttl=self.lease_ttl,
                on_registered=self._on_registered,
                **fields,
            )

    def _on_registered(self, registration: Registration) -> None:
        self.registration = registration
        if self.state == "starting":
            self.state = "serving"
            log.info(
                "%s registered as %s at %s:%d",
                self.name,
                registration.instance.id,
                registration.instance.address,
                registration.instance.port,
            )
        self.registered.set()
        with self._events_lock:
            events = self._events
        if events is not None:
            events.start()

    def wait_registered(self, timeout: float = 10.0) -> Registration:
        """Block until the instance is registered; TimeoutError after `timeout`."""
        if not self.registered.wait(timeout):
            raise TimeoutError(f"{self.name} was not registered within {timeout} s")
        assert self.registration is not None
        return self.registration

    def health(self) -> tuple[int, dict[str, Any]]:
        """The status and body of `/healthz`."""
        body = {"service": self.name, "instance": self.instance_id, "state": self.state}
        return (503 if self.state in ("draining", "stopped") else 200), body

    def server_started(self) -> None:
        """Called at the ASGI lifespan start-up: uvicorn's handlers exist by now."""
        self._sigterm.install()

    # -- stopping ----------------------------------------------------------------------

    def _prepare_stop(self) -> None:
        """SIGTERM: deregister and let callers see it before the server stops; meanwhile
        the event handlers in flight finish and the subscriptions hand their work back."""
        if self._deregister():
            began = time.monotonic()
            self._stop_events()
            time.sleep(max(0.0, self.shutdown_grace - (time.monotonic() - began)))

    def _deregister(self) -> bool:
        """Leave the registry (once); True if this call did it."""
        with self._stop_lock:
            if self.state in ("draining", "stopped"):
                return False
            self.state = "draining"
            holder, self._holder = self._holder, None
        if holder is not None:
            self.agent.release(holder)
            log.info("%s deregistered %s", self.name, self.instance_id)
        return True

    def stop(self) -> None:
        """Deregister (if not yet) and stop the agent. Idempotent; safe from any thread."""
        self._deregister()
        self._stop_events()
        with self._stop_lock:
            if self.state == "stopped":
                return
            self.state = "stopped"
        self.agent.stop()

    def _at_exit(self) -> None:
        # app.run() returned (or the script ends): finish what is in flight, then stop.
        if self.state == "stopped":
            return
        self._deregister()
        if not self.gate.wait_idle(self.drain_timeout):
            log.warning("%s: %d request(s) still in flight at exit", self.name, self.gate.in_flight)
        self.stop()


def _choose(found: list[addr.Listener], port: int | None) -> addr.Listener | None:
    if port is not None:
        return next((x for x in found if x.port == port), None)
    return found[0] if found else None


def _flask_route_hook() -> None:
    from flask import request  # Flask is the user's dependency, not shoal's

    rule = request.url_rule
    request.environ[ROUTE_KEY] = rule.rule if rule is not None else None
