"""A replica for the SDK's tests (FastAPI under uvicorn) that can be made slow or failing.

Env: REPLICA_SERVICE (the service name), REPLICA_WEIGHT, REPLICA_ZONE. `GET /work` answers
which instance served it; `POST /admin/mode {"mode": "ok|slow|fail", "delay": s}` changes
how it answers from then on (slow: sleeps `delay` first; fail: 500).
"""

import asyncio
import os

from fastapi import FastAPI, Response

import shoal

app = FastAPI()
svc = shoal.Service(
    os.environ.get("REPLICA_SERVICE", "replicas"),
    app=app,
    weight=float(os.environ.get("REPLICA_WEIGHT", "1")),
    zone=os.environ.get("REPLICA_ZONE", ""),
    check_interval="1s",
)
mode = {"mode": "ok", "delay": 0.0}


@app.get("/work")
async def work(response: Response) -> dict[str, object]:
    if mode["mode"] == "slow":
        await asyncio.sleep(float(mode["delay"]))
    if mode["mode"] == "fail":
        response.status_code = 500
    return {"instance": svc.instance_id, "port": svc.port}


@app.post("/admin/mode")
async def set_mode(body: dict[str, object]) -> dict[str, object]:
    mode.update(body)
    return mode
