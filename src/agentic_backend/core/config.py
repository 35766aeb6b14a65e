"""Settings, read once at start-up from the environment (prefix ``AGENTIC_``) and validated.

Everything that varies between a laptop and production lives here; nothing else in the code reads
``os.environ``. Insecure combinations are refused at start-up in production mode rather than warned about.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def is_weak(key: str) -> bool:
    """Too short or too repetitive to be an admin key in production."""
    return len(key) < 32 or len(set(key)) < 12


class Settings(BaseSettings):
    """The service's configuration. Every field maps to ``AGENTIC_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_", env_file=None, extra="ignore", frozen=True)

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="production refuses to start without AGENTIC_ADMIN_API_KEY and AGENTIC_METRICS_TOKEN "
        "(a generated admin key would be printed where logs are collected, /metrics open to anyone), and "
        "refuses weak ones (a metrics token under 32 characters, a weak admin key).",
    )
    data_dir: Path = Field(default=Path("data"), description="Where the embedded SQLite database lives.")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; unset means SQLite at <data_dir>/agentic.db. "
        "PostgreSQL: postgresql+asyncpg://user:password@host:5432/dbname",
    )
    database_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="PostgreSQL: the longest a connection attempt or a statement may take, and a wait for a "
        "free pooled connection, before the request gets a 503 with Retry-After (a hung or black-holed "
        "server would otherwise hold requests for good). SQLite: the longest a statement waits for "
        "another process's write lock (without holding the event loop).",
    )
    migrate_on_start: bool = Field(default=True, description="Apply database migrations at start-up.")
    drain_file: Path | None = Field(
        default=None,
        description="While this file exists the service drains: it keeps serving, readiness answers 503 and "
        "every response closes its connection, so that clients move to other replicas before it stops "
        "(the Helm chart's preStop creates it; serve removes a stale one at start).",
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="The admin key to create on first start (empty database); else one is generated.",
    )
    session_idle_ttl_seconds: float = Field(
        default=3600.0, gt=0, description="A session expires this long after its last use."
    )
    auth_failure_limit: int = Field(
        default=10, ge=1, description="Failed authentications from one address ..."
    )
    auth_failure_window_seconds: float = Field(default=60.0, gt=0, description="... within this window ...")
    auth_cooldown_seconds: float = Field(
        default=300.0, gt=0, description="... block it for this long (HTTP 429)."
    )

    agents_file: Path | None = Field(default=None, description="JSON list of extra or changed agent types.")
    redis_url: str | None = Field(
        default=None, description="redis://host:6379/0 for a response cache shared by replicas."
    )
    cache_ttl_seconds: float = Field(default=3600.0, gt=0, description="How long a cached answer is served.")
    cache_scope: Literal["key", "global"] = Field(
        default="key",
        description=(
            "key: each API key has its own cached answers (tenants never see each other's); global: every "
            "key shares them (more hits, for a single tenant or public questions)."
        ),
    )
    cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="In-memory cache size limit.")
    model_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Prices for models genai-prices does not know, as JSON: "
        '{"model": [input $/Mtok, output $/Mtok]}.',
    )
    default_monthly_budget_dollars: float | None = Field(default=None, ge=0, description="Unset: no budget.")
    default_rpm_limit: int | None = Field(default=None, ge=1, description="Unset: no rate limit.")
    default_tpm_limit: int | None = Field(
        default=None, ge=1, description="Tokens (input and output) per minute per key. Unset: no limit."
    )
    query_cost_estimate_dollars: float = Field(
        default=0.0,
        ge=0,
        description=(
            "The least each model call reserves from its key's budget while it runs; otherwise a call "
            "reserves the most it can cost (its input bytes and the agent's max_output_tokens at the "
            "model's prices), so budgets hold whatever this is."
        ),
    )
    budget_reservation_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "How long past its query's deadline a model call's budget reservation is kept before it is "
            "released as abandoned (its worker died mid-call)."
        ),
    )
    sim_latency_ms: float = Field(
        default=0.0, ge=0, le=600_000, description="How long each sim model call takes, in milliseconds."
    )
    sim_failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="The share of sim model calls that fail (0 to 1), for drills."
    )
    sim_tool_calls: bool = Field(
        default=True, description="Whether sim asks for the agent type's tools, as a real model would."
    )
    sim_tokens_per_second: float = Field(
        default=0.0,
        ge=0,
        le=1_000_000,
        description="How fast sim streams an answer (0: at once); the first token comes after "
        "AGENTIC_SIM_LATENCY_MS.",
    )
    stream_keepalive_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="A streamed answer sends a ': keep-alive' comment after this long without an event (a "
        "long tool step), so that proxies (nginx: 60 s by default) do not close it as idle.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: uvicorn's lines; json: one JSON object per log record and a line per request.",
    )
    genai_metrics: bool = Field(
        default=True,
        description="Export the OpenTelemetry GenAI semantic conventions' metrics beside the seed's.",
    )
    max_body_bytes: int = Field(
        default=4 * 1_048_576,
        ge=1_024,
        le=256 * 1_048_576,
        description="The largest request body (a chat completion's whole conversation included); past it, "
        "413 before the body is read. /record has its own, smaller.",
    )
    # What one client can hold of a worker before the application sees its request (core/httpguard.py).
    http_max_head_bytes: int = Field(
        default=32 * 1024,
        ge=1_024,
        le=1_048_576,
        description="The longest request head (request line and headers) a worker reads; past it: 431.",
    )
    http_max_headers: int = Field(
        default=100, ge=8, le=10_000, description="The most header fields of a request; past it: 431."
    )
    http_max_url_bytes: int = Field(
        default=8 * 1024, ge=256, le=1_048_576, description="The longest request URL; past it: 414."
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="A request's head must arrive within this long of its first byte (or of the "
        "connection's opening): else 408 and the connection is closed (a silent one just closed).",
    )
    http_body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="A request body gets this long, plus a second for every "
        "AGENTIC_HTTP_BODY_MIN_BYTES_PER_SECOND bytes it brings: a slower one gets 408.",
    )
    http_body_min_bytes_per_second: float = Field(
        default=500.0, gt=0, le=1e9, description="The slowest a request body may arrive, once it has started."
    )
    openai_api_key: SecretStr | None = Field(
        default=None, description="The openai provider's key (never logged, never in a metric)."
    )
    openai_base_url: str | None = Field(
        default=None, description="Any OpenAI-compatible API (vLLM, Ollama, LiteLLM)."
    )
    anthropic_api_key: SecretStr | None = Field(default=None, description="The anthropic provider's key.")
    anthropic_base_url: str | None = Field(
        default=None, description="Another Anthropic-compatible endpoint (a proxy, a local server)."
    )
    provider_timeout_seconds: float = Field(
        default=60.0, gt=0, description="The longest one model call may take before it fails as a timeout."
    )
    provider_max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a model call that failed and may succeed (the SDKs')."
    )

    key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a worker remembers a verified API key (0: never). A key revoked through "
        "another worker or replica stops working within this time; through the same one, at once.",
    )
    gc_freeze: bool = Field(
        default=True,
        description="After start-up, exclude the objects built so far from garbage collection (gc.freeze).",
    )
    gc_threshold: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="Allocations between two collections of the youngest generation (gc.set_threshold; "
        "Python's default is 700). 0: Python's defaults. Only objects in reference cycles wait for a "
        "collection; everything else is freed at once, whatever this is.",
    )
    loop_hold_trace_ms: int = Field(
        default=0,
        ge=0,
        le=60_000,
        description="When set (at least 5), each worker logs the stack of whatever holds its event loop this "
        "many milliseconds or longer, at WARNING: to find the cause of a high event_loop_lag_seconds. "
        "0: off (its checks cost about what the loop-lag timers do).",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /api/v1/monitoring/metrics requires 'Authorization: Bearer <token>'.",
    )
    metrics_multiprocess_dir: Path | None = Field(
        default=None,
        description=(
            "Set by 'serve --workers N': the folder where each worker process publishes its metric values "
            "so that one scrape reports the sum over all workers. Leave unset for one process."
        ),
    )
    metrics_max_series_per_metric: int = Field(
        default=2_000,
        ge=1,
        le=1_000_000,
        description="Series of each built-in metric before updates fold into its __overflow__ series.",
    )
    custom_metrics_max_series_per_metric: int = Field(
        default=1_000, ge=1, le=100_000, description="Series of each custom metric."
    )
    custom_metrics_max_series_total: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Series of all custom metrics together."
    )
    custom_metrics_max_labels: int = Field(default=10, ge=0, le=64, description="Labels per custom metric.")
    custom_metrics_max_bytes: int = Field(
        default=16 * 1_048_576,
        ge=65_536,
        le=4 * 1_073_741_824,
        description=(
            "What all custom metrics together may take, in bytes: their exposition lines (names, labels, "
            "bucket lines and values, as /metrics sends them) plus a fixed cost per series and family. "
            "A record that would pass it is refused (422). Bounds /metrics' size and the memory they hold."
        ),
    )
    custom_metrics_max_batch: int = Field(
        default=1_000, ge=1, le=100_000, description="Records per /record request."
    )
    custom_metrics_max_body_bytes: int = Field(
        default=1_048_576, ge=1_024, le=64 * 1_048_576, description="The largest /record body."
    )

    prometheus_url: str | None = Field(
        default=None,
        description="A Prometheus that scrapes this service (Compose and 'stack up' run one): the console's "
        "charts query it with the dashboard's PromQL. Unset: the service keeps the charts' history itself.",
    )
    alertmanager_url: str | None = Field(
        default=None, description="The console's Alerts page reads what fires from this Alertmanager."
    )
    traces_url: str | None = Field(
        default=None,
        description="A link for a trace id in the console, with {trace_id} where the id goes, e.g. "
        "'http://localhost:16686/trace/{trace_id}' (Jaeger) or Grafana Tempo's explore URL.",
    )
    history_interval_seconds: int = Field(
        default=15,
        json_schema_extra={"enum": [1, 3, 5, 15]},
        description="Without a Prometheus: how often the service samples the metrics the console's charts "
        "read (kept 25 hours in its database).",
    )
    console_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="How long a console sign-in lasts."
    )

    @field_validator("history_interval_seconds")
    @classmethod
    def _divides_every_step(cls, value: int) -> int:
        if value not in (1, 3, 5, 15):  # the console's steps (15, 60, 300 s) are multiples of it
            raise ValueError("history_interval_seconds must be 1, 3, 5 or 15")
        return value

    @field_validator("loop_hold_trace_ms")
    @classmethod
    def _traceable_hold(cls, value: int) -> int:
        if 0 < value < 5:  # the tracer checks every value/2 ms: shorter holds are every callback's
            raise ValueError("loop_hold_trace_ms must be 0 (off) or at least 5")
        return value

    @field_validator("prometheus_url", "alertmanager_url", "traces_url")
    @classmethod
    def _http_url(cls, value: str | None, info: Any) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{info.field_name} must be an http:// or https:// URL")
        if info.field_name == "traces_url" and "{trace_id}" not in value:
            raise ValueError("traces_url must hold {trace_id} where the trace id goes")
        return value.rstrip("/") if info.field_name != "traces_url" else value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'agentic.db'}"

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            # Without them the service would print a generated admin key where logs are collected, and
            # serve /metrics (key names, traffic, spend) to anyone who can reach it.
            missing = [
                name
                for name, value in (
                    ("AGENTIC_ADMIN_API_KEY", self.admin_api_key),
                    ("AGENTIC_METRICS_TOKEN", self.metrics_token),
                )
                if value is None
            ]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} must be set in production (AGENTIC_ENVIRONMENT=production); "
                    "generate each with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        if self.environment is Environment.PRODUCTION and self.metrics_token is not None:
            token = self.metrics_token.get_secret_value()
            if len(token) < 32:
                raise ValueError(
                    "AGENTIC_METRICS_TOKEN must be at least 32 characters in production; "
                    "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        admin = self.admin_api_key
        if (
            self.environment is Environment.PRODUCTION
            and admin is not None
            and is_weak(admin.get_secret_value())
        ):
            raise ValueError(
                "AGENTIC_ADMIN_API_KEY is too weak for production: use at least 32 characters of random "
                "text, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return self
