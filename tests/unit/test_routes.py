"""The app's routes, put straight into its list instead of through ``include_router`` (app.py
``_install_routes``): the same routes, the same OpenAPI document, every request served as before; and the
query routes' class (core/routes.py ``RequestRoute``), which calls an endpoint of the request alone
without FastAPI's parameter solving."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from agentic_backend.app import ROUTERS, create_app, index
from agentic_backend.core.routes import RequestRoute


@pytest.fixture
def app(tmp_path: FilePath, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
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


def direct_router() -> APIRouter:
    """Endpoints of each shape, on a router of ``RequestRoute``s."""
    router = APIRouter(prefix="/t", route_class=RequestRoute)

    @router.post("/echo/{name}")
    async def echo(name: str, request: Request) -> Response:
        return Response(f"{name}:{(await request.body()).decode()}", media_type="text/plain")

    @router.get("/wrong")
    async def wrong(request: Request) -> Response:
        return {"not": "a response"}  # type: ignore[return-value]

    @router.get("/refuses")
    async def refuses(request: Request) -> Response:
        raise HTTPException(status_code=418, detail="no")

    @router.get("/number/{n}")
    async def number(n: int, request: Request) -> Response:  # validated by FastAPI: not direct
        return Response(str(n + 1))

    @router.get("/short/{word}")
    async def short(word: Annotated[str, Path(max_length=3)], request: Request) -> Response:  # validated
        return Response(word)

    @router.get("/aliased/{theWord}")
    async def aliased(word: Annotated[str, Path(alias="theWord")], request: Request) -> Response:
        return Response(word)

    @router.get("/model")
    async def model(request: Request) -> dict[str, str]:  # FastAPI serialises it: not direct
        return {"a": "b"}

    return router


def direct_app(*, include: bool = False) -> FastAPI:
    app = FastAPI()
    if include:
        app.include_router(direct_router())
    else:
        app.router.routes.extend(direct_router().routes)  # as app.py does
    return app


def test_request_routes_call_only_endpoints_of_the_request_and_text_path_parameters(app: FastAPI) -> None:
    direct = {
        route.path: route._direct() for route in direct_app().router.routes if isinstance(route, RequestRoute)
    }
    assert direct == {
        "/t/echo/{name}": True,
        "/t/wrong": True,
        "/t/refuses": True,
        "/t/number/{n}": False,
        "/t/short/{word}": False,
        "/t/aliased/{theWord}": True,
        "/t/model": False,
    }
    queries = {"/v1/chat/completions", "/v1/responses", "/api/v1/agents/{agent_type}/query"}
    served = {route.path for route in app.routes if isinstance(route, RequestRoute) and route._direct()}
    assert served == queries


@pytest.mark.parametrize("include", [False, True], ids=["in-the-app", "included"])
def test_a_request_route_answers_as_fastapi_would(include: bool) -> None:
    with TestClient(direct_app(include=include), raise_server_exceptions=False) as client:
        echoed = client.post("/t/echo/a%20b%C3%A9", content=b"body")
        assert (echoed.status_code, echoed.text) == (200, "a b\u00e9:body")
        assert client.get("/t/refuses").json() == {"detail": "no"}
        assert client.get("/t/refuses").status_code == 418
        # An endpoint that breaks its annotation: a 500 when called directly (FastAPI would encode it)
        assert client.get("/t/wrong").status_code == (200 if include else 500)

        assert client.get("/t/number/41").text == "42"
        assert client.get("/t/number/x").status_code == 422
        assert client.get("/t/short/abc").text == "abc"
        assert client.get("/t/short/abcd").status_code == 422
        assert client.get("/t/aliased/xyz").text == "xyz"
        assert client.get("/t/model").json() == {"a": "b"}


def test_an_included_request_route_keeps_fastapi_s_handler_and_its_dependencies() -> None:
    seen: list[str] = []

    async def audit(request: Request) -> None:
        seen.append(request.url.path)

    app = FastAPI()
    app.include_router(direct_router(), dependencies=[Depends(audit)])
    with TestClient(app) as client:
        assert client.post("/t/echo/x", content=b"y").text == "x:y"
    assert seen == ["/t/echo/x"]
