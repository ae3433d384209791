"""An upstream for the gateway's tests (FastAPI under uvicorn, registered with shoal).

Env: UPSTREAM_SERVICE (the service name, default "echo"). Endpoints:

* `GET|POST /work` -> which instance answered; `POST /admin/mode {"mode": "ok|slow|fail",
  "delay": s}` makes it slow (sleeps first) or failing (500) from then on;
* any method on `/echo/{path}` -> the method, path, query, headers and body length seen;
* `GET /download/{n}` -> n bytes, streamed in 64 KiB chunks (chunked encoding);
* `POST /upload` -> the body's length and SHA-256, read as a stream;
* `GET /chunks/{k}` -> k small chunks.
"""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

import shoal

app = FastAPI()
svc = shoal.Service(os.environ.get("UPSTREAM_SERVICE", "echo"), app=app, check_interval="1s")
mode: dict[str, object] = {"mode": "ok", "delay": 0.0}


@app.api_route("/work", methods=["GET", "POST"])
async def work(response: Response) -> dict[str, object]:
    if mode["mode"] == "slow":
        await asyncio.sleep(float(mode["delay"]))  # type: ignore[arg-type]
    if mode["mode"] == "fail":
        response.status_code = 500
    return {"instance": svc.instance_id, "port": svc.port}


@app.post("/admin/mode")
async def set_mode(body: dict[str, object]) -> dict[str, object]:
    mode.update(body)
    return mode


@app.api_route("/echo/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
async def echo(request: Request, path: str) -> dict[str, object]:
    body = await request.body()
    return {
        "instance": svc.instance_id,
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": {k: v for k, v in request.headers.items()},
        "body_bytes": len(body),
    }


@app.get("/download/{n}")
async def download(n: int) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        block = b"x" * 65536
        left = n
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


@app.post("/upload")
async def upload(request: Request) -> dict[str, object]:
    digest, size = hashlib.sha256(), 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


@app.get("/chunks/{k}")
async def chunks(k: int) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(k):
            yield f"part {i}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")
