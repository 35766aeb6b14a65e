"""Structured logs (``AGENTIC_LOG_FORMAT=json``): every log record as one JSON object per line, and one
line per request with what an operator searches by.

The request line (logger ``agentic_backend.access``) has ``request_id`` (the query's, else the caller's
``X-Request-ID`` if it is a safe token, else a new one: the id an error answer quotes), ``trace_id`` (when
tracing is on), ``key_id`` (never the secret), ``method``, ``route`` (the template, as the metrics label
it), ``status``, ``duration_seconds`` and, for agent queries, ``input_tokens``, ``output_tokens`` and
``cost_usd``. It replaces uvicorn's access line.
The formatting is python-json-logger's.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentic_backend.core.errors import caller_request_id
from agentic_backend.core.routes import UNMATCHED_ENDPOINT

ACCESS_LOGGER = "agentic_backend.access"
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


def uvicorn_log_config(json_format: bool, *, access_log: bool = True) -> dict[str, Any] | None:
    """uvicorn's ``log_config``: its own default for text, the JSON formatter for every logger else; without
    ``access_log`` (``serve --no-access-log``) the request lines are left out, as uvicorn's would be."""
    if not json_format:
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": _FORMAT,
                "rename_fields": _RENAMED,
            }
        },
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            ACCESS_LOGGER: {"handlers": [], "level": "INFO" if access_log else "WARNING", "propagate": True},
        },
    }


def note_usage(state: Any, *, request_id: str, input_tokens: int, output_tokens: int, cost: float) -> None:
    """What an agent query used, for its request's log line (``request.state``)."""
    state.request_id = request_id
    state.usage = (input_tokens, output_tokens, cost)


class RequestLogMiddleware:
    """One JSON line per HTTP request (installed with AGENTIC_LOG_FORMAT=json only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        context = trace.get_current_span().get_span_context()
        # The id is given now, so that an error answer quotes the one this line will (errors.request_id_of).
        state = scope.setdefault("state", {})
        if not state.get("request_id"):
            given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
            state["request_id"] = caller_request_id(given) or uuid.uuid4().hex

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._log(scope, status, time.perf_counter() - started, context)

    def _log(self, scope: Scope, status: int, seconds: float, context: trace.SpanContext) -> None:
        state = scope.get("state") or {}
        route = getattr(scope.get("route"), "path_format", None) or UNMATCHED_ENDPOINT
        fields: dict[str, Any] = {
            "request_id": state.get("request_id"),
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "duration_seconds": round(seconds, 6),
            "key_id": state.get("key_id"),
        }
        if context.is_valid:
            fields["trace_id"] = format(context.trace_id, "032x")
        usage = state.get("usage")
        if usage is not None:
            fields["input_tokens"], fields["output_tokens"], fields["cost_usd"] = usage
        self._logger.info("request", extra=fields)
