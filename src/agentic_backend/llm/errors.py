"""The errors of a model call, each with its HTTP status and its ``llm_errors_total{kind}`` value."""

from __future__ import annotations

import math
from typing import ClassVar

from agentic_backend.core.errors import AppError


class ProviderError(AppError):
    kind: ClassVar[str] = "server"
    status_code = 502


class ProviderTimeout(ProviderError):
    kind = "timeout"
    status_code = 504


class ProviderRateLimited(ProviderError):
    """The provider refused for its rate limit. The answer carries ``Retry-After``: the provider's own
    when it sent one (whole seconds, 1 to 600), else ``DEFAULT_RETRY_AFTER_SECONDS``."""

    kind = "rate_limit"
    status_code = 429
    DEFAULT_RETRY_AFTER_SECONDS = 2

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        seconds = self.DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after
        seconds = min(600, max(1, math.ceil(seconds)))
        super().__init__(detail, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class ProviderAuthError(ProviderError):
    kind = "auth"


class ProviderServerError(ProviderError):
    kind = "server"


class ProviderBadResponse(ProviderError):
    kind = "bad_response"


ERROR_KINDS = ("timeout", "rate_limit", "auth", "server", "bad_response")
