"""``GET /summary``: the JSON a person or a script reads, computed from the same snapshot as ``/metrics``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

from pydantic import BaseModel, Field

from agentic_backend import __version__
from agentic_backend.metricstore.registry import FamilySnapshot, Snapshot
from agentic_backend.monitoring import catalogue as cat


class Percentiles(BaseModel):
    """Estimated from histogram buckets by linear interpolation, as PromQL's histogram_quantile does;
    null when nothing was observed."""

    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None


class HttpSummary(BaseModel):
    requests_total: float
    errors_total: float = Field(description="Responses with a 5xx status.")
    error_ratio: float | None = Field(description="errors_total / requests_total; null before any request.")
    by_status_class: dict[str, float]
    latency_seconds: Percentiles
    active_requests: float


class AgentTypeSummary(BaseModel):
    queries: dict[str, float] = Field(description="By status: success, error, rejected.")
    duration_seconds: Percentiles


class AgentsSummary(BaseModel):
    queries_total: float
    by_type: dict[str, AgentTypeSummary]


class ModelUsage(BaseModel):
    provider: str
    model: str
    cost_dollars: float
    input_tokens: float
    output_tokens: float
    cache_read_tokens: float = Field(default=0.0, description="Of the input: read from the prompt cache.")
    cache_write_tokens: float = Field(default=0.0, description="Of the input: written to the prompt cache.")
    reasoning_tokens: float = Field(default=0.0, description="Of the output: spent reasoning.")


class CostSummary(BaseModel):
    total_dollars: float
    total_input_tokens: float
    total_output_tokens: float
    by_model: list[ModelUsage]


class CacheSummary(BaseModel):
    hits: float
    misses: float
    hit_ratio: float | None = Field(description="hits / (hits + misses) of get operations; null before any.")
    errors: float
    size_bytes: float


class AuthSummary(BaseModel):
    success: float
    failure: float
    by_method: dict[str, dict[str, float]]


class PermissionSummary(BaseModel):
    allowed: float
    denied: float
    by_permission: dict[str, dict[str, float]]


class KeySpendRow(Protocol):
    """A key's spend as billing reports it, with (at least) ``KeySpend``'s fields."""

    @property
    def key_id(self) -> int: ...


class KeySpendSource(Protocol):
    """What monitoring needs of billing, registered at start-up: every key's spend this month
    (``Ledger.totals_by_key``)."""

    async def __call__(self) -> Sequence[KeySpendRow]: ...


class KeySpend(BaseModel):
    """One API key's totals from the usage ledger (not from Prometheus: per-key labels would be unbounded)."""

    key_id: int
    name: str
    queries: int
    input_tokens: int
    output_tokens: int
    cost_dollars: float
    cached: int


class MonitoringSummary(BaseModel):
    version: str
    uptime_seconds: float
    workers: str = Field(description="'single' or 'multiprocess' (every worker summed).")
    http: HttpSummary
    agents: AgentsSummary
    costs: CostSummary
    cache: CacheSummary
    auth: AuthSummary
    permissions: PermissionSummary
    active_sessions: float
    custom_metrics: dict[str, int] = Field(description="Custom families and series held.")
    spend_by_key: list[KeySpend] = Field(
        default_factory=list, description="From the usage ledger, costliest first."
    )


def estimate_percentiles(edges: tuple[float, ...], counts: list[float], total_sum: float) -> Percentiles:
    """``counts`` are per-bucket (not cumulative) counts for ``edges`` and then +Inf."""
    total = sum(counts)
    if total <= 0:
        return Percentiles(p50=None, p90=None, p99=None, mean=None)

    def quantile(q: float) -> float:
        rank = q * total
        cumulative = 0.0
        for i, count in enumerate(counts):
            if cumulative + count >= rank and count > 0:
                if i == len(edges):  # in +Inf: the highest finite edge is all we know
                    return edges[-1]
                lower = edges[i - 1] if i > 0 else 0.0
                return lower + (edges[i] - lower) * (rank - cumulative) / count
            cumulative += count
        return edges[-1]

    return Percentiles(p50=quantile(0.5), p90=quantile(0.9), p99=quantile(0.99), mean=total_sum / total)


def _rows(family: FamilySnapshot | None) -> Iterable[tuple[tuple[str, ...], list[float]]]:
    if family is None:
        return
    for sample in family.series:
        yield sample.labels, family.values(sample)


def _merged_histogram(family: FamilySnapshot | None, keep: int | None = None) -> dict[str, list[float]]:
    """Bucket counts (plus the sum, last) added up per value of label ``keep`` (or all together: key '')."""
    merged: dict[str, list[float]] = {}
    for labels, values in _rows(family):
        key = labels[keep] if keep is not None else ""
        current = merged.get(key)
        merged[key] = values if current is None else [a + b for a, b in zip(current, values, strict=True)]
    return merged


_Families = dict[str, FamilySnapshot]


def build_summary(snapshot: Snapshot, *, uptime_seconds: float, multiprocess: bool) -> MonitoringSummary:
    by_name = {f.spec.name: f for f in snapshot}
    builtin = {spec.name for spec in (*cat.CATALOGUE, *cat.GENAI_CATALOGUE)}
    custom = [
        f
        for f in snapshot
        if f.spec.name not in builtin and f.spec.name != "agentic_backend_metric_series_overflow_total"
    ]
    return MonitoringSummary(
        version=__version__,
        uptime_seconds=uptime_seconds,
        workers="multiprocess" if multiprocess else "single",
        http=_http(by_name),
        agents=_agents(by_name),
        costs=_costs(by_name),
        cache=_cache(by_name),
        auth=_auth(by_name),
        permissions=_permissions(by_name),
        active_sessions=_single(by_name, cat.ACTIVE_SESSIONS.name),
        custom_metrics={"families": len(custom), "series": sum(len(f.series) for f in custom)},
    )


def _single(by_name: _Families, name: str) -> float:
    return sum(v[0] for _, v in _rows(by_name.get(name)))


def _percentiles(edges: tuple[float, ...], hist: list[float] | None) -> Percentiles:
    return estimate_percentiles(edges, hist[:-1], hist[-1]) if hist else estimate_percentiles(edges, [], 0.0)


def _http(by_name: _Families) -> HttpSummary:
    status_classes: dict[str, float] = defaultdict(float)
    for labels, (value,) in _rows(by_name.get(cat.HTTP_REQUESTS.name)):
        status = labels[2]
        status_classes[f"{status[0]}xx" if status[:1].isdigit() else status] += value
    requests = sum(status_classes.values())
    errors = status_classes.get("5xx", 0.0)
    return HttpSummary(
        requests_total=requests,
        errors_total=errors,
        error_ratio=errors / requests if requests else None,
        by_status_class=dict(sorted(status_classes.items())),
        latency_seconds=_percentiles(
            cat.HTTP_DURATION.buckets, _merged_histogram(by_name.get(cat.HTTP_DURATION.name)).get("")
        ),
        active_requests=_single(by_name, cat.ACTIVE_REQUESTS.name),
    )


def _agents(by_name: _Families) -> AgentsSummary:
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for (agent_type, status), (value,) in _rows(by_name.get(cat.AGENT_QUERIES.name)):
        counts[agent_type][status] = counts[agent_type].get(status, 0.0) + value
    hists = _merged_histogram(by_name.get(cat.AGENT_DURATION.name), keep=0)
    by_type = {
        agent_type: AgentTypeSummary(
            queries=counts.get(agent_type, {}),
            duration_seconds=_percentiles(cat.AGENT_DURATION.buckets, hists.get(agent_type)),
        )
        for agent_type in sorted(set(counts) | set(hists))
    }
    return AgentsSummary(queries_total=sum(sum(v.values()) for v in counts.values()), by_type=by_type)


_TOKEN_FIELDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write": "cache_write_tokens",
    "reasoning": "reasoning_tokens",
}


def _costs(by_name: _Families) -> CostSummary:
    usage: dict[tuple[str, str], ModelUsage] = {}

    def of(provider: str, model: str) -> ModelUsage:
        return usage.setdefault(
            (provider, model),
            ModelUsage(provider=provider, model=model, cost_dollars=0, input_tokens=0, output_tokens=0),
        )

    for (provider, model), (value,) in _rows(by_name.get(cat.API_COST.name)):
        of(provider, model).cost_dollars += value
    for (provider, model, kind), (value,) in _rows(by_name.get(cat.API_TOKENS.name)):
        entry = of(provider, model)
        if kind in _TOKEN_FIELDS:
            setattr(entry, _TOKEN_FIELDS[kind], getattr(entry, _TOKEN_FIELDS[kind]) + value)
    return CostSummary(
        total_dollars=sum(u.cost_dollars for u in usage.values()),
        total_input_tokens=sum(u.input_tokens for u in usage.values()),
        total_output_tokens=sum(u.output_tokens for u in usage.values()),
        by_model=sorted(usage.values(), key=lambda u: -u.cost_dollars),
    )


def _cache(by_name: _Families) -> CacheSummary:
    cache = {labels: v[0] for labels, v in _rows(by_name.get(cat.CACHE_OPERATIONS.name))}
    hits, misses = cache.get(("get", "hit"), 0.0), cache.get(("get", "miss"), 0.0)
    return CacheSummary(
        hits=hits,
        misses=misses,
        hit_ratio=hits / (hits + misses) if hits + misses else None,
        errors=sum(v for (_, result), v in cache.items() if result == "error"),
        size_bytes=_single(by_name, cat.CACHE_SIZE.name),
    )


def _by_first_label(by_name: _Families, name: str) -> dict[str, dict[str, float]]:
    """A two-label counter as {first label: {second label: value}}."""
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (first, second), (value,) in _rows(by_name.get(name)):
        table[first][second] = table[first].get(second, 0.0) + value
    return dict(table)


def _auth(by_name: _Families) -> AuthSummary:
    auth = _by_first_label(by_name, cat.AUTH_ATTEMPTS.name)
    return AuthSummary(
        success=sum(m.get("success", 0.0) for m in auth.values()),
        failure=sum(m.get("failure", 0.0) for m in auth.values()),
        by_method=auth,
    )


def _permissions(by_name: _Families) -> PermissionSummary:
    perms = _by_first_label(by_name, cat.PERMISSION_CHECKS.name)
    return PermissionSummary(
        allowed=sum(p.get("allowed", 0.0) for p in perms.values()),
        denied=sum(p.get("denied", 0.0) for p in perms.values()),
        by_permission=perms,
    )
