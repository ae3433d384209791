"""Route tables that change while traffic flows: from the config center and from a file,
without a restart, a dropped request or a closed connection; a bad table is refused."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import yaml

from shoal.client import ControlPlane
from shoal.testing import ServerProcess, wait_for

from .conftest import GatewayFactory, UpstreamFactory, route

ITEM = "gateway/routes"


def _table(version: str) -> dict[str, Any]:
    return {"routes": [route("/a", rewrite_prefix=f"/echo/{version}", name="a")]}


class KeptAliveLoad:
    """One persistent HTTP/1.1 connection sending GET /a until stopped."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.connect()
        self.local_port = self.conn.sock.getsockname()[1]
        self.results: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.ports: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.conn.request("GET", "/a")
                response = self.conn.getresponse()
                body = response.read()
                self.ports.add(self.conn.sock.getsockname()[1])
                path = json.loads(body).get("path", "") if response.status == 200 else ""
                self.results.append((response.status, path))
            except (OSError, http.client.HTTPException, ValueError) as error:
                self.errors.append(repr(error))
                return

    def __enter__(self) -> KeptAliveLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()

    def saw(self, path: str) -> bool:
        return any(p == path for _, p in self.results[-5:])


def test_a_route_change_in_the_config_center_applies_without_dropping_anything(
    server: ServerProcess, upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    upstreams(1)
    with ControlPlane(server.url) as cp:
        cp.config.publish(ITEM, yaml.safe_dump(_table("v1")), format="yaml")
        gw = gateway(routes_item=ITEM)
        with KeptAliveLoad(gw.port) as load:
            wait_for(lambda: load.saw("/echo/v1"), 20, what="routes v1 in force")
            cp.config.publish(ITEM, yaml.safe_dump(_table("v2")), format="yaml")
            wait_for(lambda: load.saw("/echo/v2"), 10, what="routes v2 in force")
            # A table that does not validate is refused whole; v2 stays.
            bad = {"routes": [{"prefix": "/a", "service": "echo", "max_body": "lots"}]}
            cp.config.publish(ITEM, yaml.safe_dump(bad), format="yaml")
            wait_for(
                lambda: (
                    'shoal_gateway_route_reloads_total{result="refused",source="config"} 1.0'
                    in gw.metrics()
                ),
                10,
                what="the bad table refused",
            )
            count = len(load.results)
            wait_for(lambda: len(load.results) > count + 20, 10, what="more traffic")
    assert not load.errors, load.errors
    assert all(status == 200 for status, _ in load.results)
    assert load.ports == {load.local_port}  # one connection throughout
    assert load.results[-1][1] == "/echo/v2"
    assert "max_body" in gw.log()  # the refusal says which field


def test_the_routes_file_is_reloaded_when_it_changes(
    upstreams: UpstreamFactory, gateway: GatewayFactory
) -> None:
    upstreams(1)
    gw = gateway(_table("v1"))
    with KeptAliveLoad(gw.port) as load:
        wait_for(lambda: load.saw("/echo/v1"), 20, what="routes v1 in force")
        gw.write_routes(_table("v2"))
        wait_for(lambda: load.saw("/echo/v2"), 10, what="routes v2 from the file")
    assert not load.errors and all(status == 200 for status, _ in load.results)
    assert load.ports == {load.local_port}
