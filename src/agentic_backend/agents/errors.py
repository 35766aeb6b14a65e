"""Errors of the agents feature (see ``core.errors`` and ``llm.errors`` for the whole hierarchy)."""

from __future__ import annotations

from agentic_backend.core.errors import AppError, LimitExceeded, NotFound, ServiceUnavailable


class UnknownAgentType(NotFound):
    """No agent type of this name."""


class BudgetExceeded(AppError):
    """The key's monthly budget is spent (HTTP 402)."""

    status_code = 402


class RateLimited(LimitExceeded):
    """The key sent more requests this minute than its limit."""


class ProviderNotConfigured(ServiceUnavailable):
    """The agent type's provider has no credentials configured (HTTP 503)."""
