"""A Flask app written the plain way; the one shoal line is marked."""

import os
import sys
import time

from flask import Flask, jsonify, request

import shoal

app = Flask(__name__)
svc = shoal.Service("plain-flask", app=app)  # <- the one line that makes it a service


@app.get("/whoami")
def whoami():  # type: ignore[no-untyped-def]
    return jsonify(pid=os.getpid(), port=svc.port, trace=request.headers.get("traceparent"))


@app.get("/slow")
def slow():  # type: ignore[no-untyped-def]
    time.sleep(float(request.args.get("seconds", "1")))
    return jsonify(slept=True)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]))
