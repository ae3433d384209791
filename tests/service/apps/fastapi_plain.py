"""A FastAPI app written the plain way (served by uvicorn); the one shoal line is marked."""

import asyncio
import os

from fastapi import FastAPI, Request

import shoal

app = FastAPI()
svc = shoal.Service("plain-fastapi", app=app)  # <- the one line that makes it a service
flask_peer = svc.client("plain-flask")


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, object]:
    return {"pid": os.getpid(), "port": svc.port, "trace": request.headers.get("traceparent")}


@app.get("/slow")
async def slow(seconds: float = 1.0) -> dict[str, bool]:
    await asyncio.sleep(seconds)
    return {"slept": True}


@app.get("/peer")
async def peer() -> dict[str, object]:
    answer = await flask_peer.get("/whoami")
    return {"peer": answer.json(), "my_trace": svc_trace()}


def svc_trace() -> str | None:
    from shoal.observe import current_trace

    context = current_trace.get()
    return context.trace_id if context else None
