"""A route's JSON body, validated by pydantic-core straight from its bytes, with FastAPI's errors.

Declared as a body parameter, a model costs FastAPI the standard library's ``json.loads`` of the body,
then a validation of the decoded objects, inside the resolution of the route's parameters and
dependencies. Read by ``json_body`` in the route (after the caller's authorization), the same chat
completion cost 6-7 % fewer instructions in all (2,632k to 2,459-2,485k, ``bench.service_instructions``): one
pass of pydantic-core over the bytes. Routes on the path of every agent query read their body so; the
others keep FastAPI's parameters.

The errors are FastAPI's own, so every handler answers as before: a body pydantic-core refuses is decoded
and validated again as FastAPI does it (the content type, ``json.loads``, then the objects), and that says
why: a ``RequestValidationError`` whose locations start with ``body``, ``json_invalid`` for JSON that does
not decode, FastAPI's 400 for a body that cannot be read or decoded at all. ``body_schema`` documents the
body in the OpenAPI document, as FastAPI would have (core/openapi.py publishes the model's schema).
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
_UNREADABLE = "There was an error parsing the body"  # FastAPI's words
_DOCUMENTED: dict[str, type[BaseModel]] = {}  # the models body_schema refers to, by their schema's name


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test (``strict_content_type``, its default): ``application/json`` or ``application/*+json``;
    a body without a content type is not JSON."""
    if not content_type:
        return False
    if content_type.startswith("application/json") and (len(content_type) == 16 or content_type[16] in "; "):
        return True  # the common case, without building a message to parse one header
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def json_body(request: Request, model: type[M]) -> M:
    """The request's body as ``model``; a ``RequestValidationError`` (or FastAPI's 400) as FastAPI gives."""
    try:
        raw = await request.body()
    except HTTPException:
        raise  # the body limit's 413 (core/bodylimit.py)
    except Exception as exc:
        raise HTTPException(400, _UNREADABLE) from exc
    is_json = _is_json(request.headers.get("content-type"))
    if raw and is_json:
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            pass  # why, in FastAPI's terms: below
    if not raw:
        error: dict[str, Any] = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([error], body=None)
    body: Any = raw
    if is_json:
        try:
            body = json.loads(raw)  # as Starlette's Request.json()
        except json.JSONDecodeError as exc:
            invalid: dict[str, Any] = {
                "type": "json_invalid",
                "loc": ("body", exc.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": exc.msg},
            }
            raise RequestValidationError([invalid], body=exc.doc) from exc
        except Exception as exc:  # not UTF-8, nested past the recursion limit
            raise HTTPException(400, _UNREADABLE) from exc
    try:
        return model.model_validate(body, from_attributes=True)  # FastAPI's words for a body of another type
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with ``json_body``: its required JSON body. The
    model's schema is one of ``documented()``, which the OpenAPI document publishes."""
    _DOCUMENTED[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def documented() -> dict[str, type[BaseModel]]:
    """The body models of the routes declared so far, by the name their ``$ref`` gives."""
    return dict(_DOCUMENTED)
