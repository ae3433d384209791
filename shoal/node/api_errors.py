"""The API's one error shape, `{"error": code, "message": text, ...}`, and the translations
into it.

`ApiError` is what handlers, the fast path and the boundary rules raise; `kv_error` maps
the store's errors onto statuses; `install_error_handlers` makes FastAPI's own answers
(validation errors, unknown routes, wrong methods) take the same shape, so a client sees
one format whatever refused its request. Nothing here touches the member or the store.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..kv import Compacted, FutureRevision, KvError, LeaseNotFound, LimitExceeded
from .rendering import json_bytes


class ApiError(Exception):
    """A refusal with its status, stable code, message and any extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        self.status, self.code, self.message, self.extra = status, code, message, extra
        super().__init__(message)

    def body(self) -> bytes:
        """The JSON body, byte for byte as FastAPI's handler renders the same error."""
        return json_bytes({"error": self.code, "message": self.message, **self.extra})


def kv_error(error: KvError) -> ApiError:
    """The store's refusal as the API's: limits 413, compaction 410, a missing lease 404,
    a revision from the future or any other bad command 400."""
    if isinstance(error, LimitExceeded):
        return ApiError(413, "limit_exceeded", str(error))
    if isinstance(error, Compacted):
        return ApiError(410, "compacted", str(error), compact_revision=error.compacted_revision)
    if isinstance(error, LeaseNotFound):
        return ApiError(404, "lease_not_found", str(error))
    if isinstance(error, FutureRevision):
        return ApiError(400, "future_revision", str(error))
    return ApiError(400, "invalid_request", str(error))


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    """Answer `ApiError`, validation errors and Starlette's own refusals in the API's shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, **error.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {item.get('msg')}")
        return error_response(400, "invalid_request", "; ".join(problems), details=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> Response:
        # Starlette's own answers (no such route, wrong method) in the API's error shape.
        code = _HTTP_CODES.get(error.status_code, "invalid_request")
        response = error_response(error.status_code, code, str(error.detail))
        for name, value in (error.headers or {}).items():
            response.headers[name] = value  # e.g. Allow on a 405
        return response


__all__ = ["ApiError", "error_response", "install_error_handlers", "kv_error"]
