"""Draining before a stop (``AGENTIC_DRAIN_FILE``): while the file exists, the service keeps serving but
readiness answers 503 and every response closes its connection.

Why: a pod being replaced keeps receiving requests for a moment (its endpoint leaves every node's
proxy at its own pace; the Helm chart's preStop waits for that), and clients keep their kept-alive
connections to it. When SIGTERM comes, uvicorn closes the idle ones at once, and a client that writes a
request on one at that instant gets a reset: HTTP/1.1's keep-alive race, a failed request for a
non-idempotent POST. Told ``Connection: close`` during the preStop wait, every client closes its
connection after its next answer and opens the next one to a pod that stays, so that nothing is idle
here by the time SIGTERM arrives. The chart's preStop creates the file (``touch "$AGENTIC_DRAIN_FILE"``);
``serve`` removes a stale one at start. A file rather than a signal: uvicorn's supervisor dies of any
signal it does not handle, and a file reaches every worker; rather than an endpoint: nothing from the
network can take a pod out of service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentic_backend.core.tasks import cancel

_CLOSE = (b"connection", b"close")


class Drain:
    """Whether this process drains, read from the file every ``interval`` seconds (not per request)."""

    def __init__(self, file: Path | None, *, interval: float = 0.2) -> None:
        self.file = file
        self.interval = interval
        self.active = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.file is not None and self._task is None:
            self._poll()
            self._task = asyncio.create_task(self._watch())

    def _poll(self) -> None:
        assert self.file is not None
        self.active = self.file.exists()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._poll()

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None


class CloseWhileDraining:
    """Adds ``Connection: close`` to every response while the service drains (plain ASGI: the request
    path pays one attribute read otherwise)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.drain.active or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, _CLOSE]}
            await send(message)

        await self.app(scope, receive, closing)
