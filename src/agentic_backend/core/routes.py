"""What the HTTP layer calls a request's route, for logs and metrics alike; the query routes' class."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import fastapi.routing
from fastapi import Request, Response
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.routing import APIRoute

# The route template of a request no route matched: one value for every unknown path, so that a label or
# a log field never takes a value from free client input.
UNMATCHED_ENDPOINT = "__unmatched__"

# FastAPI's inclusion context while it builds the handler of an included route (None outside); if a
# release drops it, every route keeps FastAPI's handler (tests/unit/test_routes.py notices).
_INCLUSION = getattr(fastapi.routing, "_effective_route_context_var", None)


class RequestRoute(APIRoute):
    """A route class (FastAPI's ``route_class``) that calls an endpoint of the request (and of text path
    parameters) returning its own ``Response`` straight away; any other endpoint is FastAPI's as usual.

    FastAPI's request handler prepares for every parameter kind even when there is none to solve: an error
    context, the dependency solver, the response's arguments, a wrapper that times the endpoint. The query
    routes read the caller and the body themselves (agents/deps.py ``query_call``, core/bodies.py) and
    return their response, which FastAPI passes on as it is (no response model or status code applies to
    a ``Response``), so none of it has anything to do: 4 % of a chat completion's instructions
    (bench.service_instructions, 2,231k -> 2,142k). A text path parameter without constraints needs no
    validation (any segment is a string) and is passed from the match. Starlette's request/response
    wrapper, the exception handlers and the OpenAPI document (built from the same dependant) are unchanged.

    Only a route in the app's own list is called so (app.py puts every route there): one reached through
    ``include_router`` gets its handler inside FastAPI's inclusion context, which may add dependencies this
    route does not know of, and keeps FastAPI's handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if _INCLUSION is None or _INCLUSION.get() is not None or not self._direct():
            return super().get_route_handler()
        endpoint, name = self.endpoint, self.dependant.request_param_name
        assert name is not None
        path = [(field.name, field.alias) for field in self.dependant.path_params]

        async def handler(request: Request) -> Response:
            arguments = {name: request.path_params[alias] for name, alias in path}
            response = await endpoint(**arguments, **{name: request})
            if not isinstance(response, Response):  # its annotation says Response: a defect, so a 500
                raise TypeError(f"{endpoint.__qualname__} returned {type(response).__name__}, not a Response")
            return response

        return handler

    def _direct(self) -> bool:
        """An async endpoint of the request and text path parameters, with no dependency, that returns a
        ``Response``."""
        dependant = self.dependant
        parameters = inspect.signature(self.endpoint).parameters
        returns = get_typed_return_annotation(self.endpoint)
        return (
            inspect.iscoroutinefunction(self.endpoint)
            and isinstance(returns, type)
            and issubclass(returns, Response)
            and dependant.request_param_name is not None
            and len(parameters) == 1 + len(dependant.path_params)
            and all(field.field_info.annotation is str for field in dependant.path_params)
            and not any(field.field_info.metadata for field in dependant.path_params)  # no constraint
            and not dependant.dependencies
            and not (dependant.query_params or dependant.header_params)
            and not (dependant.cookie_params or dependant.body_params)
            and not (dependant.background_tasks_param_name or dependant.response_param_name)
        )
