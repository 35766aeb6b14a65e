"""core/bodies.py: a body read by ``json_body`` is accepted, and refused, exactly as FastAPI's own body
parameter would: the same model, the same values, the same status and the same errors, for every input."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from agentic_backend.core.bodies import body_schema, json_body


class Item(BaseModel):
    name: str = Field(min_length=1)
    count: StrictInt = 1


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["a", "b"]
    ratio: Annotated[float, Field(ge=0, le=2)] | None = None
    flag: StrictBool = False
    items: list[Item] = Field(default_factory=list, max_length=2)
    tags: dict[str, str] | None = None


async def _errors(_: Request, exc: Exception) -> JSONResponse:
    # The errors themselves, as Python writes them: FastAPI's default handler cannot encode an input of
    # infinity, NaN or a lone surrogate (the service's own handlers can: core/errors.py).
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"errors": repr(exc.errors()), "body": repr(exc.body)}, status_code=422)


def _app() -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, _errors)

    @app.post("/fastapi")
    async def through_fastapi(body: Body) -> dict[str, Any]:
        return body.model_dump()

    @app.post("/ours", openapi_extra=body_schema(Body))
    async def through_json_body(request: Request) -> dict[str, Any]:
        return (await json_body(request, Body)).model_dump()

    return app


JSON = {"Content-Type": "application/json"}
CASES: list[tuple[bytes, dict[str, str]]] = [
    (b'{"kind": "a"}', JSON),
    (
        b'{"kind": "b", "ratio": 1.5, "flag": true, "items": [{"name": "x", "count": 3}], "tags": {"k": "v"}}',
        JSON,
    ),
    (b'{"kind": "a", "ratio": 1e309}', JSON),  # past a float: infinity, above the bound
    (b'{"kind": "a", "ratio": NaN}', JSON),  # the standard library's JSON takes NaN; pydantic-core does not
    (b'{"kind": "a", "kind": "b"}', JSON),  # a repeated key: the last one
    (b'{"kind": "a", "flag": 0}', JSON),
    (b'{"kind": "a", "items": [{"name": "x", "count": 1.0}]}', JSON),
    (b'{"kind": "c", "extra": 1, "items": [{}, {}, {}]}', JSON),
    (b'{"kind": "a", "tags": {"k": 1}}', JSON),
    (b'{"kind": "a", "name": "\\ud800"}', JSON),  # a lone surrogate
    (b"[1, 2]", JSON),
    (b'"text"', JSON),
    (b"null", JSON),
    (b"", JSON),
    (b"{", JSON),
    (b'{"kind": "a"} trailing', JSON),
    (b"\xff\xfe{}", JSON),  # not UTF-8
    (b"[" * 100_000, JSON),  # nested past any recursion limit
    (b'{"kind": "a"}', {"Content-Type": "application/json; charset=utf-8"}),
    (b'{"kind": "a"}', {"Content-Type": "Application/JSON"}),
    (b'{"kind": "a"}', {"Content-Type": "application/merge-patch+json"}),
    (b'{"kind": "a"}', {"Content-Type": "application/jsonx"}),
    (b'{"kind": "a"}', {"Content-Type": "text/plain"}),
    (b'{"kind": "a"}', {}),  # no content type: not JSON (FastAPI's strict_content_type)
    (b"kind=a", {"Content-Type": "application/x-www-form-urlencoded"}),
]


@pytest.mark.parametrize(("raw", "headers"), CASES, ids=[repr(c[0][:40]) + str(c[1]) for c in CASES])
def test_json_body_answers_as_fastapi_does(raw: bytes, headers: dict[str, str]) -> None:
    with TestClient(_app()) as client:
        expected = client.post("/fastapi", content=raw, headers=headers)
        got = client.post("/ours", content=raw, headers=headers)
    assert got.status_code == expected.status_code, (expected.text, got.text)
    assert got.json() == expected.json()


def test_the_body_is_documented_as_fastapi_documents_it() -> None:
    schema = _app().openapi()
    fastapi, ours = schema["paths"]["/fastapi"]["post"], schema["paths"]["/ours"]["post"]
    assert ours["requestBody"] == fastapi["requestBody"]
