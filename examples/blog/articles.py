"""The blog's `articles` service: FastAPI, its own SQLite database, served by uvicorn.

    uvicorn articles:app --port 8002

POST /articles checks the author through the `users` service (an unknown author is a
422 that says so); GET /articles?author_id=&page= lists them, `page_size` per page --
a setting from the config center (`blog/articles`), changed without a restart.
"""

from __future__ import annotations

import os
import sqlite3

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

import shoal


class Settings(BaseModel):
    page_size: int = Field(default=10, ge=1, le=100)


class NewArticle(BaseModel):
    author_id: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=100_000)


app = FastAPI(title="articles")
svc = shoal.Service("articles", app=app)  # the one line that makes it a shoal service
users = svc.client("users")
settings = svc.settings("blog/articles", Settings)  # hot-reloaded from the config center

DB = os.environ.get("ARTICLES_DB", "articles.db")


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(DB, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


with db() as conn:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS articles (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " author_id INTEGER NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL)"
    )


@app.post("/articles", status_code=201)
async def create_article(article: NewArticle) -> dict[str, object]:
    author = await users.get(f"/users/{article.author_id}")
    if author.status_code == 404:
        raise HTTPException(422, f"unknown author: no user {article.author_id}")
    if author.status_code != 200:
        raise HTTPException(502, f"users answered {author.status_code}")
    with db() as conn:
        cursor = conn.execute(
            "INSERT INTO articles (author_id, title, body) VALUES (?, ?, ?)",
            (article.author_id, article.title, article.body),
        )
    return {
        "id": cursor.lastrowid,
        "author": author.json()["name"],
        "title": article.title,
        "served_by": svc.instance_id,
        "author_checked_by": author.json()["served_by"],
    }


@app.get("/articles")
async def list_articles(
    author_id: int | None = Query(default=None, ge=1), page: int = Query(default=1, ge=1)
) -> dict[str, object]:
    size = settings.value.page_size if settings.value else 10
    where, args = ("WHERE author_id = ?", [author_id]) if author_id else ("", [])
    with db() as conn:
        rows = conn.execute(
            f"SELECT id, author_id, title FROM articles {where} ORDER BY id LIMIT ? OFFSET ?",
            [*args, size, (page - 1) * size],
        ).fetchall()
    return {
        "articles": [dict(r) for r in rows],
        "page": page,
        "page_size": size,
        "served_by": svc.instance_id,
    }


@app.get("/articles/{article_id}")
async def get_article(article_id: int) -> dict[str, object]:
    with db() as conn:
        row = conn.execute("SELECT * FROM articles WHERE id = ?", (article_id,)).fetchone()
    if row is None:
        raise HTTPException(404, f"no article {article_id}")
    return {**dict(row), "served_by": svc.instance_id}
