"""The providers a service has: ``sim`` always, ``openai`` and ``anthropic`` when configured."""

from __future__ import annotations

from agentic_backend.core.config import Settings
from agentic_backend.llm.base import Provider
from agentic_backend.llm.sim import SimProvider


def build_providers(settings: Settings) -> dict[str, Provider]:
    providers: dict[str, Provider] = {
        "sim": SimProvider(
            latency_ms=settings.sim_latency_ms,
            failure_rate=settings.sim_failure_rate,
            tool_calls=settings.sim_tool_calls,
            tokens_per_second=settings.sim_tokens_per_second,
        )
    }
    timeout, retries = settings.provider_timeout_seconds, settings.provider_max_retries
    if settings.openai_api_key is not None:
        from agentic_backend.llm.openai_provider import OpenAIProvider

        providers["openai"] = OpenAIProvider(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            timeout=timeout,
            max_retries=retries,
        )
    if settings.anthropic_api_key is not None:
        from agentic_backend.llm.anthropic_provider import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout=timeout,
            max_retries=retries,
        )
    return providers
