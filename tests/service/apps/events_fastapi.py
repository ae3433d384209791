"""A FastAPI service whose replicas bill orders in one group (a coroutine handler).

Env: HANDLER_DELAY (seconds each message takes), HANDLED_LOG (a file: one line
`start <id>` when a message's handling begins, `done <id>` when it ends -- it outlives
the process). `GET /seen` lists the orders handled here with the trace id current in the
handler; `POST /orders?n=N` publishes with `await svc.apublish`.
"""

import asyncio
import os

from fastapi import FastAPI

import shoal
from shoal.events import Message
from shoal.observe.trace import current_trace

app = FastAPI()
svc = shoal.Service("orders-fastapi", app=app, check_interval="1s")
DELAY = float(os.environ.get("HANDLER_DELAY", "0"))
LOG = os.environ.get("HANDLED_LOG")
seen: list[dict[str, str]] = []


def note(line: str) -> None:
    if LOG:
        with open(LOG, "a") as out:
            out.write(line + "\n")


@svc.on_event("orders", group="billing", start="earliest")
async def bill(message: Message) -> None:
    order = message.json()["id"]
    note(f"start {order}")
    await asyncio.sleep(DELAY)
    context = current_trace.get()
    seen.append({"id": order, "trace": context.trace_id if context else ""})
    note(f"done {order}")


@app.post("/orders")
async def orders(n: int, prefix: str = "a") -> dict[str, object]:
    for i in range(n):
        await svc.apublish("orders", f'{{"id": "{prefix}-{i}"}}', key=f"customer-{i % 5}")
    return {"published": n}


@app.get("/seen")
async def get_seen() -> list[dict[str, str]]:
    return seen
