"""Errors of the agents feature (see ``core.errors`` and ``llm.errors`` for the whole hierarchy)."""

from __future__ import annotations

from agentic_backend.core.errors import AppError, LimitExceeded, NotFound, OpenAIShape, ServiceUnavailable


class UnknownAgentType(NotFound):
    """No agent type of this name."""


class BudgetExceeded(AppError):
    """The key's monthly budget is spent: HTTP 402 on the native route; on the OpenAI face, OpenAI's own
    quota error (429 ``insufficient_quota``), which every OpenAI SDK raises as its RateLimitError."""

    status_code = 402
    openai = OpenAIShape(429, "insufficient_quota", "insufficient_quota")


class ModelNotFound(NotFound):
    """No agent type of the name a request's ``model`` gives (OpenAI's ``model_not_found``)."""

    openai = OpenAIShape(404, "invalid_request_error", "model_not_found")


class RateLimited(LimitExceeded):
    """The key sent more requests (or tokens) this minute than its limit."""

    openai = OpenAIShape(429, "requests", "rate_limit_exceeded")


class ProviderNotConfigured(ServiceUnavailable):
    """The agent type's provider has no credentials configured (HTTP 503)."""
