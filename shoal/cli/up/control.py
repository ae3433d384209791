"""The local control socket of a running `shoal up`, and the client `shoal scale` uses.

One JSON object per line each way over a Unix socket in the application's data directory
(`.shoal/up.sock` beside the manifest), reachable only by users who can reach that
directory. Requests: `{"op": "ps"}`, `{"op": "scale", "service": S, "replicas": N}`,
`{"op": "restart", "service": S}`; answers: `{"ok": true, ...}` or
`{"ok": false, "error": "what is wrong"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["request", "serve_control"]

MAX_LINE = 64 * 1024


async def serve_control(supervisor: Supervisor, path: Path) -> asyncio.AbstractServer:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left behind by an `up` that was killed

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            answer = await _answer(supervisor, line)
        except Exception as error:  # the socket is local; still, never crash the supervisor
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path), limit=MAX_LINE)
    path.chmod(0o600)
    return server


async def _answer(supervisor: Supervisor, line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        return {"ok": False, "error": "not a JSON line"}
    if not isinstance(message, dict):
        return {"ok": False, "error": "expected a JSON object"}
    op = message.get("op")
    try:
        if op == "ps":
            return {"ok": True, **supervisor.status()}
        service = message.get("service")
        if not isinstance(service, str):
            return {"ok": False, "error": "service must be a string"}
        if op == "scale":
            count = message.get("replicas")
            if isinstance(count, bool) or not isinstance(count, int):
                return {"ok": False, "error": "replicas must be an integer"}
            return {"ok": True, "replicas": await supervisor.scale(service, count)}
        if op == "restart":
            return {"ok": True, "replicas": await supervisor.restart(service)}
    except (KeyError, ValueError, RuntimeError) as error:
        return {"ok": False, "error": str(error.args[0] if error.args else error)}
    return {"ok": False, "error": f"unknown op {op!r} (ps, scale, restart)"}


def request(path: Path, message: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Send `message` to the `up` listening at `path`; its answer (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer
