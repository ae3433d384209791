"""The blog's `users` service: Flask, its own SQLite database, written the plain way.

    python users.py --port 8001      (or under any WSGI server)

POST /users {"name"} creates a user; GET /users/{id} reads one; GET /users/{id}/articles
lists their articles by calling the `articles` service through the shoal client (which
balances over its replicas and retries on another one if a replica fails).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
from typing import Any

from flask import Flask, jsonify, request

import shoal

app = Flask(__name__)
svc = shoal.Service("users", app=app)  # the one line that makes it a shoal service
articles = svc.client("articles")

DB = os.environ.get("USERS_DB", "users.db")


def db() -> sqlite3.Connection:
    # One connection per request: Flask serves requests on threads, and the service's
    # replicas share the file (WAL lets them read while one writes).
    conn = sqlite3.connect(DB, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


with db() as conn:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS users"
        " (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)"
    )


def problem(status: int, message: str) -> Any:
    return jsonify(
        error="invalid_request" if status == 400 else "not_found", message=message
    ), status


@app.post("/users")
def create_user() -> Any:
    body = request.get_json(silent=True)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        return problem(400, "name must be a non-empty string of at most 100 characters")
    with db() as conn:
        user_id = conn.execute("INSERT INTO users (name) VALUES (?)", (name.strip(),)).lastrowid
    return jsonify(id=user_id, name=name.strip(), served_by=svc.instance_id), 201


@app.get("/users/<int:user_id>")
def get_user(user_id: int) -> Any:
    with db() as conn:
        row = conn.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        return problem(404, f"no user {user_id}")
    return jsonify(id=row["id"], name=row["name"], served_by=svc.instance_id)


@app.get("/users/<int:user_id>/articles")
def user_articles(user_id: int) -> Any:
    with db() as conn:
        row = conn.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        return problem(404, f"no user {user_id}")
    answer = articles.get("/articles", params={"author_id": user_id})
    if answer.status_code != 200:
        return jsonify(error="upstream", message=f"articles answered {answer.status_code}"), 502
    found = answer.json()
    return jsonify(
        user={"id": row["id"], "name": row["name"]},
        articles=found["articles"],
        served_by=svc.instance_id,
        articles_served_by=found["served_by"],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app.run(host=args.host, port=args.port)
