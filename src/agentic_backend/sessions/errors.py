"""Errors of the sessions feature."""

from __future__ import annotations

from agentic_backend.core.errors import NotFound


class SessionNotFound(NotFound):
    """No unexpired session with this id belongs to the caller's key."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"No session {session_id} for this API key: it never existed, expired or was deleted."
        )


class ResponseNotFound(NotFound):
    """No stored response with this id belongs to the caller's key (``previous_response_id``)."""

    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"No stored response {response_id} for this API key: it never existed, was not stored "
            "(store: false) or expired.",
            param="previous_response_id",
        )
