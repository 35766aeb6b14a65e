"""HEAD answered wherever GET is, as HTTP requires (RFC 9110, 9.3.2): the same status and headers, no body.

FastAPI's routes answer only the methods they declare, so ``HEAD /`` or ``HEAD /api/v1/monitoring/health``
was a 405: uptime checkers that probe with HEAD, and ``curl -I``, saw the service as broken. Declaring HEAD
on every route would list a HEAD operation for each in the OpenAPI document; instead the request is routed
as a GET and its body is dropped here, so the headers (Content-Length included) are the GET's. A route
that takes no GET still answers 405, with its ``Allow`` header. The metrics middleware, outside this one,
counts the request under its own method, HEAD, and its route. Plain ASGI: other methods pass through at
the cost of one comparison.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        routed = {**scope, "method": "GET"}

        def routing_done() -> None:
            # What the router filled in (the matched route, its parameters) for the middleware outside,
            # which labels the request by its route; the method stays HEAD.
            scope.update((k, v) for k, v in routed.items() if k != "method")

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                routing_done()
            elif message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(routed, receive, headers_only)
        finally:  # an exception before the response: the error handler outside answers, under the route
            routing_done()
