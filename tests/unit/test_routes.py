"""The app's routes, put straight into its list instead of through ``include_router`` (app.py
``_install_routes``): the same routes, the same OpenAPI document, every request served as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from agentic_backend.app import ROUTERS, create_app, index


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("AGENTIC_DATA_DIR", str(tmp_path))
    return create_app()


def included(app: FastAPI) -> FastAPI:
    """The same routers as FastAPI's documentation shows them included."""
    reference = FastAPI(title=app.title, version=app.version, docs_url=None, redoc_url=None)
    reference.add_api_route("/", index, methods=["GET"], tags=["service"], response_model=dict[str, str])
    for router in ROUTERS:
        reference.include_router(router)
    return reference


def test_no_router_has_what_include_router_would_add() -> None:
    for router in ROUTERS:
        assert not router.dependencies, router.prefix
        assert not router.responses, router.prefix
        assert not router.callbacks, router.prefix
        assert router.default_response_class.__class__.__name__ == "DefaultPlaceholder", router.prefix


def test_the_openapi_document_is_the_one_include_router_makes(app: FastAPI) -> None:
    def document(routes: list) -> dict:
        return get_openapi(title=app.title, version=app.version, routes=routes)

    assert document(app.routes) == document(included(app).routes)


def test_every_route_is_there_once_the_agents_first(app: FastAPI) -> None:
    expected = [route for router in ROUTERS for route in router.routes]
    routes = app.routes
    assert isinstance(routes[0], APIRoute)
    assert routes[0].path == "/"
    assert routes[1 : 1 + len(expected)] == expected
    rest = routes[1 + len(expected) :]  # FastAPI's documentation (core/docs.py): after every route of ours
    assert {getattr(route, "path", None) for route in rest} >= {"/openapi.json", "/docs", "/redoc"}
    assert len({id(route) for route in routes}) == len(routes)
    assert [getattr(route, "path", None) for route in routes].index("/v1/chat/completions") < 5


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/", 200, "application/json"),
        ("/docs", 200, "text/html"),
        ("/redoc", 200, "text/html"),
        ("/openapi.json", 200, "application/json"),
        ("/docs-assets/swagger-ui.css", 200, "text/css"),
        ("/console/", 200, "text/html"),
        ("/api/v1/monitoring/health", 200, "application/json"),
        ("/no/such/route", 404, "application/json"),
        ("/v1/models/", 307, None),  # the slash redirect still finds the route
    ],
)
def test_each_kind_of_route_answers_as_before(app: FastAPI, path: str, status: int, kind: str | None) -> None:
    with TestClient(app) as client:
        response = client.get(path, follow_redirects=False)
    assert response.status_code == status
    if kind is not None:
        assert response.headers["content-type"].startswith(kind)
