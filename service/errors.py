"""One error shape everywhere: {"error": {"code", "message", "requestId"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.failures import Failure, classify

log = logging.getLogger("service.errors")

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    423: "locked",
    428: "precondition_required",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise from a route to answer with the standard error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _DEFAULT_CODES.get(status, "error")
        self.message = message
        self.headers = headers
        self.details = details


def error_body(
    status: int, message: str, request_id: str, code: str | None = None, **details: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code or _DEFAULT_CODES.get(status, "error"),
        "message": message,
        "requestId": request_id,
    }
    error.update(details)
    return {"error": error}


def log_failure(
    logger: logging.Logger, failure: Failure, exc: BaseException, request_id: str, path: str
) -> None:
    extra = {"requestId": request_id, "route": path, "error": type(exc).__name__}
    if failure.expected:
        logger.warning("request failed: %s", failure.code, extra=extra)
    else:
        logger.error("unhandled error", exc_info=exc, extra=extra)


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_response(
    request: Request,
    status: int,
    message: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    return JSONResponse(
        error_body(status, message, request_id_of(request), code, **details),
        status_code=status,
        headers=headers,
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    # Only location and message: pydantic's `input` could echo a password back.
    return [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body",
            "message": str(err.get("msg", "invalid")),
        }
        for err in exc.errors()
    ]


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts for this path (routers may be nested)."""
    scope = {k: v for k, v in request.scope.items() if k not in {"route", "endpoint"}}
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(
            request, exc.status, exc.message, exc.code, exc.headers, **exc.details
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list every route's.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(request, exc.status_code, message, headers=headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, 422, "request validation failed", fields=_field_errors(exc))

    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        failure = classify(exc)
        log_failure(log, failure, exc, request_id_of(request), request.url.path)
        request.scope.setdefault("state", {})["error_logged"] = True
        return error_response(
            request, failure.status, failure.message, failure.code, failure.headers()
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unhandled)
