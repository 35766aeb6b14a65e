"""The OpenAPI document, made exact: what FastAPI generates, with every error status a route can answer and
the one error body the service really sends.

FastAPI documents ``HTTPValidationError`` for 422 (the service sends ``{"error", "detail"}``, see
core/errors.py) and only the statuses a route declares, while authentication, the brute-force guard, the
storage layer and the body limit can answer on every route. This adds, per operation: 401, 403 and 429
where a key is needed (the security schemes say which), 422 where there is anything to validate, 413
where there is a body, 500 everywhere and 503 where the database is read; all with the ``Error`` schema
(``HealthResponse`` for the health check's own 503). It also publishes the schemas that routes reference
by hand (``CustomMetricRecord``), so no ``$ref`` dangles. ``tests/integration/test_contract.py`` holds the
service to it with schemathesis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter

ERROR_REF = "#/components/schemas/Error"
_DESCRIPTIONS = {
    400: "The request is malformed.",
    401: "No valid API key (or metrics token).",
    402: "The key's monthly budget is spent.",
    403: "The key's role lacks the permission.",
    404: "Not found.",
    409: "Conflicts with an existing resource.",
    413: "The body is too large.",
    415: "The body is not JSON.",
    422: "A parameter or the body is invalid.",
    429: "Too many requests (the key's rate limit) or too many failed authentications from this address.",
    500: "An unexpected error; the body has the request id to quote.",
    502: "The model provider failed.",
    503: "A dependency (the database, the provider's credentials) is unavailable; retry after Retry-After.",
    504: "The model provider did not answer in time.",
}
# Routes anyone may call: no key, so no 401/403/429 and no key lookup in the database.
_PUBLIC = {
    ("get", "/"),
    ("get", "/api/v1/monitoring/health"),
    ("get", "/api/v1/monitoring/live"),
    ("get", "/api/v1/monitoring/ready"),
    ("get", "/api/v1/monitoring/metrics"),
    ("post", "/api/v1/console/session"),  # the sign-in: the key is in the body
}


class Error(BaseModel):
    """Every error the service answers with."""

    error: str = Field(description="The kind of error, e.g. ValidationError, NotFound, RateLimited.")
    detail: str = Field(description="A sentence saying what went wrong and, where it helps, what to do.")
    request_id: str | None = Field(
        default=None, description="On 500 and 503: the id the server logged the failure under."
    )


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, ...")
    param: str | None = None
    code: str | None = Field(description="The error's kind in snake_case, e.g. rate_limited.")
    request_id: str | None = Field(default=None, description="On 5xx: the id the server logged it under.")


class OpenAIError(BaseModel):
    """Every error of the OpenAI-compatible face (/v1), in OpenAI's shape."""

    error: OpenAIErrorDetail


OPENAI_ERROR_REF = "#/components/schemas/OpenAIError"


def _add_components(schema: dict[str, Any], extra: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in extra.items():
        generated = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        for defined, definition in generated.pop("$defs", {}).items():
            components.setdefault(defined, definition)
        components[name] = generated


def contract_openapi(
    app: FastAPI, extra_schemas: dict[str, Any], refine: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    _add_components(schema, {"Error": Error, "OpenAIError": OpenAIError, **extra_schemas})
    components = schema["components"]["schemas"]
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components_security = schema["components"].setdefault("securitySchemes", {})
    components_security["bearer"] = {"type": "http", "scheme": "bearer", "description": "An API key."}
    components_security["apiKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    components_security["metricsToken"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "AGENTIC_METRICS_TOKEN, when it is set.",
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _complete(path, method, operation)
    _link(schema)
    if refine is not None:
        refine(schema)
    app.openapi_schema = schema
    return schema


def _complete(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {500}
    if (method, path) not in _PUBLIC:
        statuses |= {401, 403, 429, 503}
        operation["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
    elif path == "/api/v1/console/session":
        statuses |= {401, 429, 503}  # a wrong key; too many wrong keys from the address
    elif path.endswith("/metrics"):
        statuses.add(401)
        operation["security"] = [{}, {"metricsToken": []}]
    openai = path.startswith("/v1/")  # the OpenAI-compatible face: OpenAI's error shape, 400 not 422
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(400 if openai else 422)
    if "requestBody" in operation:
        statuses |= {400, 413}  # a body that is not UTF-8 or not JSON; past the body limit
    if openai:
        responses.pop("422", None)
    for code in statuses:
        responses.setdefault(str(code), {})
    for status, response in responses.items():
        code = int(status)
        if code < 400:
            continue
        response.setdefault("description", _DESCRIPTIONS.get(code, "An error."))
        if response.get("description") == "Validation Error":
            response["description"] = _DESCRIPTIONS[422]
        content = response.setdefault("content", {}).setdefault("application/json", {})
        existing = content.get("schema", {}).get("$ref", "")
        if not existing or existing.endswith("/HTTPValidationError"):
            content["schema"] = {"$ref": OPENAI_ERROR_REF if openai else ERROR_REF}


# OpenAPI links: what a created resource's id opens (schemathesis' stateful phase follows them).
_LINKS = {
    ("/api/v1/keys", "post", "201"): {
        "RevokeKey": ("DELETE", "/api/v1/keys/{key_id}", {"key_id": "$response.body#/id"}),
        "SetKeyLimits": ("PUT", "/api/v1/keys/{key_id}/limits", {"key_id": "$response.body#/id"}),
        "UsageOfKey": ("GET", "/api/v1/usage", {"key_id": "$response.body#/id"}),
    },
    ("/api/v1/sessions", "post", "201"): {
        "GetSession": ("GET", "/api/v1/sessions/{session_id}", {"session_id": "$response.body#/id"}),
        "DeleteSession": ("DELETE", "/api/v1/sessions/{session_id}", {"session_id": "$response.body#/id"}),
    },
    ("/api/v1/agents/{agent_type}/query", "post", "200"): {
        "SessionOfQuery": (
            "GET",
            "/api/v1/sessions/{session_id}",
            {"session_id": "$response.body#/session_id"},
        ),
        "UsageOfQuery": ("GET", "/api/v1/usage", {}),
    },
}


def _operation_id(schema: dict[str, Any], method: str, path: str) -> str | None:
    operation = schema.get("paths", {}).get(path, {}).get(method.lower())
    return None if operation is None else str(operation.get("operationId"))


def _link(schema: dict[str, Any]) -> None:
    for (path, method, status), links in _LINKS.items():
        response = schema.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, (target_method, target_path, parameters) in links.items():
            target = _operation_id(schema, target_method, target_path)
            if target is not None:
                response.setdefault("links", {})[name] = {"operationId": target, "parameters": parameters}
