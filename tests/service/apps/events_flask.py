"""A Flask service that publishes orders and audits them (a plain, blocking handler).

`POST /orders?n=N&prefix=P` publishes N orders with `svc.publish` from the request (so they
carry its trace context); `GET /seen` lists what the `audit` group's handler got here:
`[{"id": order id, "trace": the trace id current in the handler}]`.
"""

import sys
import threading

from flask import Flask, jsonify, request

import shoal
from shoal.events import Message
from shoal.observe.trace import current_trace

app = Flask(__name__)
svc = shoal.Service("orders-flask", app=app, check_interval="1s")
seen: list[dict[str, str]] = []
lock = threading.Lock()


@svc.on_event("orders", group="audit", start="earliest")
def audit(message: Message) -> None:
    context = current_trace.get()
    with lock:
        seen.append({"id": message.json()["id"], "trace": context.trace_id if context else ""})


@app.post("/orders")
def orders() -> object:
    n, prefix = int(request.args["n"]), request.args.get("prefix", "o")
    offsets = []
    for i in range(n):
        order = f"{prefix}-{i}"
        published = svc.publish("orders", f'{{"id": "{order}"}}', key=f"customer-{i % 5}")
        offsets.append(published.offset)
    return jsonify({"published": n, "offsets": offsets})


@app.get("/seen")
def get_seen() -> object:
    with lock:
        return jsonify(list(seen))


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
