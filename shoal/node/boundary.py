"""The rules every HTTP request passes before any handler sees it (issue 17).

Theory of operation. The ASGI front (front.py) calls these for every request, so the
fast path and the FastAPI handlers behind it meet one implementation of each rule and
give the same answer:

1. **The target is UTF-8.** A path or query whose percent-encoding decodes to invalid
   UTF-8 is refused (`check_target`). Without this, `a%FF` and `a%FE` both became the key
   `a\\ufffd` (the ASGI server decodes with replacement): two keys aliased.
2. **The body limit holds while reading.** `read_body` stops at the first chunk that
   crosses the limit, whether or not a Content-Length was sent: a chunked upload is
   never buffered past it.
3. **A body is JSON, UTF-8, nested at most as deep as the parser can go, and its text is
   encodable** (`parse_json_body`). JSON allows `"\\ud800"`, a lone UTF-16 surrogate that
   no UTF-8 encoder accepts; stored, it made every later rendering of the record fail.
   Refusing it here, before any handler runs, makes that impossible for every route.

Each refusal is an `ApiError` with the API's `{"error", "message"}` shape, naming where
the problem is. Never: touch the store, or accept what a later step could fail to render.
"""

from __future__ import annotations

import enum
import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import Receive

from .api_errors import ApiError


class _NoBody:
    """The value `parse_json_body` gives for an empty body (JSON has no such value)."""

    __slots__ = ()


NO_BODY = _NoBody()


def check_target(path: bytes, query: bytes) -> ApiError | None:
    """A 400 if the percent-decoded path or query is not UTF-8, else None."""
    for what, raw in (("path", path), ("query string", query)):
        if b"%" not in raw and raw.isascii():
            continue
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            return ApiError(
                400,
                "invalid_request",
                f"the {what} is not valid UTF-8 once percent-decoded "
                f"(byte {error.start}); keys and names are UTF-8 text",
            )
    return None


class BodyRead(enum.Enum):
    COMPLETE = "complete"
    TOO_LARGE = "too large"
    DISCONNECTED = "disconnected"


async def read_body(receive: Receive, limit: int) -> tuple[bytes, BodyRead]:
    """The request body and how reading it ended.

    Reading stops at the chunk that crosses `limit` (the rest is never buffered): the
    caller answers 413 and closes the connection. A client gone before the end of its
    body (or cut off by the header timeout) sent no request: the caller must not act on
    the part that arrived, which may happen to parse.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", BodyRead.DISCONNECTED
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", BodyRead.TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), BodyRead.COMPLETE


def parse_json_body(body: bytes) -> Any:
    """The JSON value of a request body (`NO_BODY` if empty), or raise a 400 `ApiError`."""
    if not body.strip():
        return NO_BODY
    try:
        data = json.loads(body)
    except UnicodeDecodeError as error:
        raise ApiError(
            400, "invalid_request", f"the body is not valid UTF-8 (byte {error.start})"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as error:
        raise ApiError(400, "invalid_request", f"the body is not valid JSON: {error}") from None
    # json.loads turns a lone "\ud800" escape (and raw surrogate bytes) into a str no
    # encoder accepts. Only a \u escape or a 0xED lead byte can produce one: skip the
    # walk for the (ordinary) bodies that hold neither.
    if b"\\u" in body or b"\xed" in body:
        where = _surrogate_at(data)
        if where is not None:
            raise ApiError(
                400,
                "invalid_request",
                f"{where}: holds a lone UTF-16 surrogate, which is not Unicode text "
                "(escape characters outside the BMP as a surrogate pair)",
                field=where,
            )
    return data


def _too_deep() -> ApiError:
    return ApiError(400, "invalid_request", "the body is not valid JSON: nested too deeply")


def _surrogate_at(value: Any) -> str | None:
    """Where the first text (key or value) in `value` that holds a lone surrogate is, in
    the validation errors' style (`zone`, `tags[1]`, `metadata.env`; `body` for the root).

    Iterative, so a body nested as deep as the parser allowed cannot overflow the stack.
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return path or "body"
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if not _encodable(key):
                    return f"{path or 'body'} (a key)"
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["NO_BODY", "BodyRead", "check_target", "parse_json_body", "read_body"]
