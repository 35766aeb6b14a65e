"""A cap on every request body (``AGENTIC_MAX_BODY_BYTES``), so that no request can make a worker hold
more than that in memory: uvicorn and Starlette read a body of any size into memory before a route sees it.

It raises a 413 ``HTTPException`` from the app's own ``receive`` (when the declared ``Content-Length`` is
over the cap, or once a chunked body passes it), that is inside the route that reads the body (an
``HTTPException``, since FastAPI turns any other exception raised while it reads a body into a 400): the
error handlers answer the usual JSON 413 and the HTTP metric counts it under the route's template.
Requests that never read a body (GET) pay nothing; written as plain ASGI, like the metrics middleware, to
stay off the hot path's cost.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        declared_too_large = declared.isdigit() and int(declared) > limit
        too_large = f"the body is larger than {limit} bytes (AGENTIC_MAX_BODY_BYTES); send a smaller request."
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if declared_too_large:
                raise HTTPException(413, too_large)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)
