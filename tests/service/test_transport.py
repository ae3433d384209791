"""The transport under the SDK's calls: injected, and its errors classified safely.

A "nothing was sent" outcome (`CONNECT_FAILURE`) lets the SDK retry any method, POST
included, so it must only come from an error whose cause proves no connection was made.
httpx's own transport raises connect errors only before writing; another transport may
map a connection lost mid-request onto `ConnectTimeout` (httpx_aiohttp does), and that
must count as a reset, not retried for a POST.
"""

from __future__ import annotations

import asyncio
import errno

import httpcore
import httpx
import pytest

from shoal.resilience import Outcome
from shoal.service import AsyncServiceClient, ClientPolicy
from shoal.service.client import _outcome_of
from shoal.testing import ServerProcess, wait_for

from .conftest import ReplicaFactory


def caused(error: httpx.HTTPError, cause: BaseException | None) -> httpx.HTTPError:
    error.__cause__ = cause
    return error


class ServerDisconnected(Exception):
    """Stands for aiohttp's ServerDisconnectedError: not an OSError, not a timeout."""


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        # httpx's own transport: connect errors are raised before anything is written.
        (caused(httpx.ConnectError("refused"), httpcore.ConnectError("refused")), "connect"),
        (caused(httpx.ConnectTimeout("slow"), httpcore.ConnectTimeout("slow")), "connect"),
        (caused(httpx.PoolTimeout("full"), httpcore.PoolTimeout("full")), "connect"),
        (httpx.ConnectError("no cause"), "connect"),
        # Another transport: only a cause that means "never connected" counts.
        (caused(httpx.ConnectError("x"), OSError(errno.ECONNREFUSED, "")), "connect"),
        (caused(httpx.ConnectTimeout("x"), OSError(errno.EHOSTUNREACH, "")), "connect"),
        (caused(httpx.ConnectTimeout("x"), TimeoutError()), "connect"),
        (caused(httpx.ConnectTimeout("x"), ServerDisconnected()), "reset"),
        (caused(httpx.ConnectTimeout("x"), ConnectionResetError(errno.ECONNRESET, "")), "reset"),
        (caused(httpx.ConnectError("x"), OSError(errno.EPIPE, "")), "reset"),
        (caused(httpx.ConnectTimeout("x"), OSError(errno.ETIMEDOUT, "")), "reset"),
        # Not connect-type: as before.
        (httpx.ReadTimeout("slow answer"), "timeout"),
        (httpx.RemoteProtocolError("closed"), "reset"),
    ],
)
def test_only_an_error_that_proves_no_connection_counts_as_nothing_sent(
    error: httpx.HTTPError, outcome: str
) -> None:
    expected = {
        "connect": Outcome.CONNECT_FAILURE,
        "reset": Outcome.RESET,
        "timeout": Outcome.TIMEOUT,
    }[outcome]
    assert _outcome_of(error) is expected


class CountingTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(str(request.url))
        return await super().handle_async_request(request)


def test_calls_go_through_an_injected_transport(
    server: ServerProcess, replicas: ReplicaFactory
) -> None:
    (app,) = replicas(1)
    transport = CountingTransport()

    async def run() -> list[int]:
        async with AsyncServiceClient(
            "replicas",
            endpoints=server.url,
            policy=ClientPolicy(zone_aware=False),
            transport=transport,
        ) as client:
            await asyncio.to_thread(
                wait_for, lambda: len(client.instances()) == 1, 20, what="the replica"
            )
            return [(await client.get("/work")).status_code for _ in range(3)]

    assert asyncio.run(run()) == [200, 200, 200]
    assert transport.sent == [app.url + "/work"] * 3
