"""The one error hierarchy of the service and its HTTP handler.

Every error a client can cause is an ``AppError`` subclass; the handler turns it into
``{"error": "<ClassName>", "detail": "<what went wrong and how to fix it>"}`` with the class's status code.

    AppError (500)
    ├── BadRequest (400)
    ├── Unauthorized (401)
    │   └── identity.errors.InvalidApiKey
    ├── agents.errors.BudgetExceeded (402)
    ├── Forbidden (403)
    │   └── identity.errors.PermissionDenied
    ├── NotFound (404)
    │   ├── identity.errors.KeyNotFound
    │   ├── sessions.service.SessionNotFound
    │   └── agents.errors.UnknownAgentType
    ├── Conflict (409)
    │   ├── monitoring.errors.MetricConflict
    │   └── identity.errors.KeyNameTaken
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── Unprocessable (422)
    │   ├── monitoring.errors.InvalidMetric
    │   ├── monitoring.errors.SeriesLimitExceeded
    │   └── identity.errors.InvalidKeyRequest
    ├── LimitExceeded (429)
    │   ├── identity.errors.TooManyFailures
    │   └── agents.errors.RateLimited
    ├── agents.service.ProviderNotConfigured (503)
    └── llm.base.ProviderError (502; ProviderTimeout 504, ProviderRateLimited 429)

Request validation errors from FastAPI/pydantic are rendered in the same shape (422), with each problem's
location and message, so that a client never has to parse two formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class AppError(Exception):
    """Base of every error the service reports to a client."""

    status_code: ClassVar[int] = 500

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class PayloadTooLarge(AppError):
    status_code = 413


class UnsupportedMediaType(AppError):
    status_code = 415


class Unprocessable(AppError):
    status_code = 422


class LimitExceeded(AppError):
    status_code = 429


def error_body(name: str, detail: Any) -> dict[str, Any]:
    return {"error": name, "detail": detail}


async def _app_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(
        error_body(type(exc).__name__, exc.detail), status_code=exc.status_code, headers=exc.headers
    )


async def _validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err.get("loc", ()))
        problems.append(f"{location}: {err.get('msg', 'invalid')}")
    detail = "The request is invalid: " + "; ".join(problems) if problems else "The request is invalid."
    return JSONResponse(error_body("ValidationError", detail), status_code=422)


async def _http_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
    name = names.get(exc.status_code, "HTTPError")
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No route matches this path; see /docs for the API."
    return JSONResponse(
        error_body(name, detail), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
