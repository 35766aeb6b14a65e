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
    │   ├── sessions.errors.SessionNotFound
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
    ├── ServiceUnavailable (503)
    │   ├── StorageUnavailable (with Retry-After): the database or Redis failed (see ``storage_failure``)
    │   └── agents.errors.ProviderNotConfigured
    └── llm.errors.ProviderError (502; ProviderTimeout 504, ProviderRateLimited 429)

Request validation errors from FastAPI/pydantic are rendered in the same shape (422), with each problem's
location and message, so that a client never has to parse two formats.

Failures that are not the client's are answered in the same shape too, never as Starlette's plain text:

* a failure of the storage layer (database unreachable, connection lost, server shutting down, pool
  exhausted, locked or lock timeout, deadlock, disk full, Redis away where it is not optional), raised by
  SQLAlchemy, the drivers or the socket beneath them, and told by error class, PostgreSQL's SQLSTATE or
  SQLite's message, is a 503 with ``Retry-After``: the request can succeed once the store is back;
* any other exception is a 500 ``InternalServerError`` whose body carries a request id, logged with the
  traceback under the same id, so that an operator can find it; the body never carries the exception text,
  which can hold data or secrets.

Both handlers sit inside the HTTP metrics middleware or report to it, so the metric counts the status the
client received (503 or 500), never a client disconnect (499).
"""

from __future__ import annotations

import errno
import logging
import re
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from redis import exceptions as redis_exc
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import compile_path

logger = logging.getLogger(__name__)
REQUEST_ID_HEADER = "X-Request-ID"
# How long a client should wait before retrying a request that failed because storage was unavailable:
# long enough for a connection pool to reconnect or a lock to clear, short enough not to stall clients.
STORAGE_RETRY_AFTER_SECONDS = 2
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True, slots=True)
class OpenAIShape:
    """How the OpenAI face answers an error where OpenAI's own API answers it differently from the native
    route (its SDKs map the status to an exception class, and clients read ``code``)."""

    status: int
    type: str
    code: str


class AppError(Exception):
    """Base of every error the service reports to a client. ``param`` names the request field at fault
    (OpenAI's errors carry it)."""

    status_code: ClassVar[int] = 500
    openai: ClassVar[OpenAIShape | None] = None

    def __init__(
        self, detail: str, *, headers: Mapping[str, str] | None = None, param: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.param = param


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


class ServiceUnavailable(AppError):
    status_code = 503


class StorageUnavailable(ServiceUnavailable):
    """The database (or another backing store) failed in a way that retrying can fix."""


def error_body(name: str, detail: Any) -> dict[str, Any]:
    return {"error": name, "detail": detail}


# The OpenAI-compatible face (/v1/...) answers errors as OpenAI does, so that its SDKs and the tools
# built on them read them: {"error": {"message", "type", "param", "code"}}, and 400 for an invalid body.
OPENAI_PREFIX = "/v1/"
_OPENAI_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    429: "rate_limit_error",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")  # HTTPError: http_error


def openai_error(
    name: str, detail: str, status: int, param: str | None = None, shape: OpenAIShape | None = None
) -> dict[str, Any]:
    if shape is not None:
        kind, code = shape.type, shape.code
    else:
        kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        code = _CAMEL.sub("_", name).lower()
    return {"error": {"message": detail, "type": kind, "param": param, "code": code}}


def error_response(
    request: Request,
    name: str,
    detail: str,
    status: int,
    headers: Mapping[str, str] | None = None,
    *,
    request_id: str | None = None,
    param: str | None = None,
    openai: OpenAIShape | None = None,
) -> JSONResponse:
    """The one error body of every route: ``{"error", "detail"}`` (and the request id of a server
    failure), or OpenAI's shape under /v1/ (with ``openai``'s status, type and code where given)."""
    if request.url.path.startswith(OPENAI_PREFIX):
        if status == 422:
            status = 400  # OpenAI: an invalid request is a 400
        if openai is not None:
            status = openai.status
        body = openai_error(name, detail, status, param, openai)
        if request_id is not None:
            body["error"]["request_id"] = request_id
    else:
        body = error_body(name, detail)
        if request_id is not None:
            body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


async def _app_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(
        request,
        type(exc).__name__,
        exc.detail,
        exc.status_code,
        exc.headers,
        param=exc.param,
        openai=exc.openai,
    )


async def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if request.url.path.startswith(OPENAI_PREFIX) and exc.errors():
        detail, param, code = openai_invalid(_first_problem(exc.errors()))
        return error_response(
            request,
            "ValidationError",
            detail,
            400,
            param=param,
            openai=OpenAIShape(400, "invalid_request_error", code),
        )
    problems = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err.get("loc", ()))
        problems.append(f"{location}: {err.get('msg', 'invalid')}")
    detail = "The request is invalid: " + "; ".join(problems) if problems else "The request is invalid."
    first = exc.errors()[0].get("loc", ()) if exc.errors() else ()
    param = ".".join(str(part) for part in first[1:]) or None  # without "body"
    return error_response(request, "ValidationError", detail, 422, param=param)


_TYPE_NAMES = {"bool": "a boolean", "int": "an integer", "float": "a number", "string": "a string"}
_TYPE_NAMES |= {"dict": "an object", "list": "an array", "model": "an object", "finite": "a finite number"}
_NOT_A_FIELD = re.compile(r"[^A-Za-z0-9_]|^(str|int|float|bool|list|dict|none|literal)$")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else "an object"


def _first_problem(errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The error to report: the first field's; a wrong ``type`` of an item before what it lacks; and of a
    union's errors the member that had the right type but a wrong value (``stop`` of five strings is too
    long an array, not "not a string")."""
    field = tuple(errors[0].get("loc", ()))[:2]
    own = [e for e in errors if tuple(e.get("loc", ()))[:2] == field]
    kind = next((e for e in own if tuple(e.get("loc", ()))[-1:] == ("type",)), None)
    if kind is not None:  # an item of another ``type`` (a built-in tool): its other fields do not matter
        return kind
    return next((e for e in own if not str(e.get("type", "")).endswith("_type")), own[0])


def openai_param(loc: Sequence[Any]) -> str | None:
    """A validation error's location as OpenAI names a parameter (``messages[0].content``): without
    ``body``, the union members pydantic names, and a tag that repeats its field's name."""
    parts: list[str] = []
    for part in loc[1:]:
        if isinstance(part, int):
            if parts:
                parts[-1] += f"[{part}]"
            continue
        text = str(part)
        if _NOT_A_FIELD.search(text) or (parts and parts[-1] == text):
            continue
        parts.append(text)
    return ".".join(parts) or None


def openai_invalid(error: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """The message, ``param`` and ``code`` OpenAI's API gives for the request error pydantic found."""
    param = openai_param(error.get("loc", ()))
    kind, given, ctx = str(error.get("type", "")), error.get("input"), error.get("ctx") or {}
    # OpenAI names the field's kind: a float bound (``le=2.0``) is a decimal's, an int bound an integer's.
    bound_value = next((ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx), None)
    number = "decimal" if isinstance(bound_value, float) else "integer"
    if param is None and kind in ("json_invalid", "missing"):  # the body itself: not JSON, or none
        why = f": {ctx['error']}" if "error" in ctx else ": the body is empty" if kind == "missing" else ""
        message = f"We could not parse the JSON body of your request{why}. The API expects a JSON payload."
        return message, None, "invalid_json"
    if param is None and (kind.endswith("_type") or kind == "model_attributes_type"):
        return f"The request body must be a JSON object, but got {_json_type(given)}.", None, "invalid_type"
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    if kind in ("greater_than_equal", "greater_than"):
        bound = f">= {ctx['ge']}" if "ge" in ctx else f"> {ctx.get('gt')}"
        message = (
            f"Invalid '{param}': {number} below minimum value. Expected a value {bound}, but got {given}."
        )
        return message, param, f"{number}_below_min_value"
    if kind in ("less_than_equal", "less_than"):
        bound = f"<= {ctx['le']}" if "le" in ctx else f"< {ctx.get('lt')}"
        message = (
            f"Invalid '{param}': {number} above maximum value. Expected a value {bound}, but got {given}."
        )
        return message, param, f"{number}_above_max_value"
    if kind in ("too_long", "too_short", "string_too_long", "string_too_short"):
        limit = ctx.get("max_length", ctx.get("min_length"))
        many = kind.endswith("long")
        side, code = ("maximum", "above_max_length") if many else ("minimum", "below_min_length")
        if ctx.get("field_type") == "Dictionary":
            message = (
                f"Invalid '{param}': too {'many' if many else 'few'} properties. Expected an object with "
            )
            message += f"at {'most' if many else 'least'} {limit} properties."
            return message, param, f"object_{code.replace('length', 'properties')}"
        what = "a string" if kind.startswith("string") else "an array"
        message = f"Invalid '{param}': {what[what.index(' ') + 1 :]} too {'long' if many else 'short'}. "
        message += f"Expected {what} with {side} length {limit}."
        return message, param, f"{what.split()[-1]}_{code}"
    typed = kind.endswith(("_type", "_parsing")) or kind in ("int_from_float", "finite_number")
    expected = next((name for prefix, name in _TYPE_NAMES.items() if kind.startswith(prefix)), None)
    if typed:
        expected = expected or "an integer"
        message = f"Invalid type for '{param}': expected {expected}, but got {_json_type(given)} instead."
        if kind == "finite_number":
            message = f"Invalid '{param}': expected a finite number, but got {given}."
        return message, param, "invalid_type"
    if kind in ("literal_error", "enum"):
        return (
            f"Invalid value for '{param}': {error.get('msg', 'not one of the supported values')}.",
            param,
            "invalid_value",
        )
    return f"Invalid '{param}': {error.get('msg', 'invalid')}.", param, "invalid_value"


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path answers (Starlette's 405 names only the first route's).
    FastAPI keeps included routers' routes behind ``iter_route_contexts``, each with its full path."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path and route.methods and compile_path(route.path)[0].fullmatch(path):
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")  # answered wherever GET is (core/head.py)
    return sorted(methods)


async def _http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
    name = names.get(exc.status_code, "HTTPError")
    detail = exc.detail
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No route matches this path; see /docs for the API."
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"This path answers {', '.join(allowed)}."
    return error_response(request, name, str(detail), exc.status_code, headers)


# SQLAlchemy errors that mean "the database is unavailable right now" rather than "this statement is wrong":
# OperationalError (SQLite: locked, disk I/O error, disk full, cannot open; PostgreSQL: connection failures,
# admin shutdown), InterfaceError (the connection is gone), and the pool's TimeoutError (exhausted).
_UNAVAILABLE_SA = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
# Raised beneath SQLAlchemy without being wrapped: asyncpg's connect() raises the socket's own errors
# (ConnectionRefusedError, a DNS failure, TimeoutError), and sqlite3's OperationalError outside a statement.
_UNAVAILABLE_RAW = (ConnectionError, TimeoutError, sqlite3.OperationalError)
_UNAVAILABLE_REDIS = (redis_exc.ConnectionError, redis_exc.TimeoutError)
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # the metrics folder's, say
_DATABASE_MODULES = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite", "agentic_backend.core.db")


def _store_raising(tb: TracebackType | None) -> str | None:
    """The store whose code the exception passed through, innermost first: 'the database' or 'Redis'."""
    found = None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str):
            if module.startswith(_DATABASE_MODULES):
                found = "the database"
            elif module.startswith("redis"):
                found = "Redis"
        tb = tb.tb_next
    return found


# PostgreSQL's SQLSTATE classes and codes that mean "unavailable now, retry": 08 connection exceptions,
# 53 insufficient resources (disk full, out of memory, too many connections), 57P01-57P05 the server
# shutting down or not accepting connections yet, 55P03 a lock timeout, 40001/40P01 serialization
# failure and deadlock (the transaction was rolled back and can be run again).
_RETRYABLE_SQLSTATE_CLASSES = ("08", "53")
_RETRYABLE_SQLSTATES = {"57P01", "57P02", "57P03", "57P04", "57P05", "55P03", "40001", "40P01"}
_SQLSTATE_REASONS = {
    "53100": "the database's disk is full",
    "53300": "the database has too many connections",
    "55P03": "the database is locked by another writer",
    "40001": "the transaction conflicted with another one",
    "40P01": "the transaction deadlocked with another one",
}


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    """The SQLSTATE of a PostgreSQL error (asyncpg's, through SQLAlchemy's adapter), if any."""
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def storage_failure(exc: BaseException) -> str | None:
    """What failed, if ``exc`` is a storage failure that retrying can fix; None for anything else."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "the database connection was lost"
    if isinstance(exc, sa_exc.DBAPIError):
        code = _sqlstate(exc)
        if code is not None and (code[:2] in _RETRYABLE_SQLSTATE_CLASSES or code in _RETRYABLE_SQLSTATES):
            return _SQLSTATE_REASONS.get(code, "the database is unavailable")
    if isinstance(exc, _UNAVAILABLE_SA):
        if isinstance(exc, sa_exc.TimeoutError):
            return "every database connection is busy"
        original = getattr(exc, "orig", None)
        text = str(original if original is not None else exc).lower()
        if "locked" in text or "busy" in text:
            return "the database is locked by another writer"
        if "full" in text:
            return "the database's disk is full"
        return "the database is unavailable"
    if isinstance(exc, _UNAVAILABLE_REDIS):
        return "Redis is unavailable"
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return "the disk is full"
    if isinstance(exc, _UNAVAILABLE_RAW):
        store = _store_raising(exc.__traceback__)
        if store is not None:
            return f"{store} is unreachable"
    return None


def caller_request_id(value: str) -> str | None:
    """The caller's ``X-Request-ID`` if it is a safe token to repeat in answers and logs, else None."""
    return value if _REQUEST_ID.fullmatch(value) else None


def request_id_of(request: Request) -> str:
    """The request's id: the one it was given already (its JSON log line's, a query's), else the caller's
    ``X-Request-ID`` if it is a safe token, else a new one."""
    given = getattr(request.state, "request_id", None)
    if isinstance(given, str) and given:
        return given
    return caller_request_id(request.headers.get(REQUEST_ID_HEADER, "")) or uuid.uuid4().hex


def _server_error(
    request: Request,
    request_id: str,
    name: str,
    detail: str,
    status: int,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A failure on our side: the error body plus the request id it was logged under."""
    headers = {**(headers or {}), REQUEST_ID_HEADER: request_id}
    return error_response(request, name, detail, status, headers, request_id=request_id)


async def _storage_error_handler(request: Request, exc: Exception) -> JSONResponse:
    reason = storage_failure(exc)
    if reason is None:  # a statement that is wrong, not a database that is away: a bug
        return await _internal_error_handler(request, exc)
    request_id = request_id_of(request)
    logger.warning("request %s: storage unavailable: %s (%s)", request_id, reason, type(exc).__name__)
    return _server_error(
        request,
        request_id,
        StorageUnavailable.__name__,
        f"{reason}; the request was not completed. Retry in {STORAGE_RETRY_AFTER_SECONDS} s.",
        StorageUnavailable.status_code,
        {"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)},
    )


async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The last resort (Starlette's ServerErrorMiddleware, outside the metrics middleware, which
    classifies the escaping exception with the same ``storage_failure``): a storage failure raised as a
    bare socket error (asyncpg's connect) is a 503, anything else a 500.

    ServerErrorMiddleware raises the exception again once this answer is sent, and uvicorn then closes
    the connection: the answer says ``Connection: close``, so that a client does not send its next request
    on a connection being closed (the PostgreSQL drill's client lost one request that way)."""
    response = await _answer_unexpected(request, exc)
    response.headers["Connection"] = "close"
    return response


async def _answer_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if storage_failure(exc) is not None:
        return await _storage_error_handler(request, exc)
    if isinstance(exc, (ClientDisconnect, BrokenPipeError, ConnectionResetError)):
        # The client went away (the server's send failed): nothing to answer, nothing to alarm anyone.
        logger.debug("client went away: %s", type(exc).__name__)
        return JSONResponse(error_body("ClientDisconnected", "the client closed the connection."), 499)
    return await _internal_error_handler(request, exc)


async def _internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    request_id = request_id_of(request)
    logger.error("request %s failed", request_id, exc_info=(type(exc), exc, exc.__traceback__))
    return _server_error(
        request,
        request_id,
        "InternalServerError",
        f"the server failed to answer this request; quote request id {request_id} to its operator.",
        500,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    # Inside the metrics middleware: these become ordinary responses that it counts as sent. Bare socket
    # errors are not caught here: one raised by the server's send (the client went away) must reach the
    # metrics middleware as it is, and a handler here would turn it into Starlette's RuntimeError.
    for kind in (sa_exc.SQLAlchemyError, *_UNAVAILABLE_REDIS):
        app.add_exception_handler(kind, _storage_error_handler)
    # Outermost: everything else, answered outside the metrics middleware, which counts the escaping
    # exception with ``storage_failure`` as the 503 or 500 this sends.
    app.add_exception_handler(Exception, _unexpected_error_handler)
