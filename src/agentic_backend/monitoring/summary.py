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


def build_summary(snapshot: Snapshot, *, uptime_seconds: float, multiprocess: bool) -> MonitoringSummary:
    by_name = {f.spec.name: f for f in snapshot}
    builtin = {spec.name for spec in (*cat.CATALOGUE, *cat.GENAI_CATALOGUE)}

    status_classes: dict[str, float] = defaultdict(float)
    for labels, (value,) in _rows(by_name.get(cat.HTTP_REQUESTS.name)):
        status = labels[2]
        status_classes[f"{status[0]}xx" if status[:1].isdigit() else status] += value
    requests = sum(status_classes.values())
    errors = status_classes.get("5xx", 0.0)
    http_hist = _merged_histogram(by_name.get(cat.HTTP_DURATION.name)).get("")
    edges = cat.HTTP_DURATION.buckets

    def single(spec_name: str) -> float:
        return sum(v[0] for _, v in _rows(by_name.get(spec_name)))

    agent_counts: dict[str, dict[str, float]] = defaultdict(dict)
    for (agent_type, status), (value,) in _rows(by_name.get(cat.AGENT_QUERIES.name)):
        agent_counts[agent_type][status] = agent_counts[agent_type].get(status, 0.0) + value
    agent_hists = _merged_histogram(by_name.get(cat.AGENT_DURATION.name), keep=0)
    agent_edges = cat.AGENT_DURATION.buckets
    by_type = {}
    for agent_type in sorted(set(agent_counts) | set(agent_hists)):
        hist = agent_hists.get(agent_type)
        by_type[agent_type] = AgentTypeSummary(
            queries=agent_counts.get(agent_type, {}),
            duration_seconds=estimate_percentiles(agent_edges, hist[:-1], hist[-1])
            if hist
            else estimate_percentiles(agent_edges, [], 0.0),
        )

    usage: dict[tuple[str, str], ModelUsage] = {}
    for (provider, model), (value,) in _rows(by_name.get(cat.API_COST.name)):
        entry = usage.setdefault(
            (provider, model),
            ModelUsage(provider=provider, model=model, cost_dollars=0, input_tokens=0, output_tokens=0),
        )
        entry.cost_dollars += value
    for (provider, model, kind), (value,) in _rows(by_name.get(cat.API_TOKENS.name)):
        entry = usage.setdefault(
            (provider, model),
            ModelUsage(provider=provider, model=model, cost_dollars=0, input_tokens=0, output_tokens=0),
        )
        if kind == "input":
            entry.input_tokens += value
        elif kind == "output":
            entry.output_tokens += value

    cache: dict[tuple[str, ...], float] = {
        labels: v[0] for labels, v in _rows(by_name.get(cat.CACHE_OPERATIONS.name))
    }
    hits, misses = cache.get(("get", "hit"), 0.0), cache.get(("get", "miss"), 0.0)

    auth: dict[str, dict[str, float]] = defaultdict(dict)
    for (method, result), (value,) in _rows(by_name.get(cat.AUTH_ATTEMPTS.name)):
        auth[method][result] = auth[method].get(result, 0.0) + value
    perms: dict[str, dict[str, float]] = defaultdict(dict)
    for (permission, result), (value,) in _rows(by_name.get(cat.PERMISSION_CHECKS.name)):
        perms[permission][result] = perms[permission].get(result, 0.0) + value

    custom = [
        f
        for f in snapshot
        if f.spec.name not in builtin and f.spec.name != "agentic_backend_metric_series_overflow_total"
    ]
    return MonitoringSummary(
        version=__version__,
        uptime_seconds=uptime_seconds,
        workers="multiprocess" if multiprocess else "single",
        http=HttpSummary(
            requests_total=requests,
            errors_total=errors,
            error_ratio=errors / requests if requests else None,
            by_status_class=dict(sorted(status_classes.items())),
            latency_seconds=estimate_percentiles(edges, http_hist[:-1], http_hist[-1])
            if http_hist
            else estimate_percentiles(edges, [], 0.0),
            active_requests=single(cat.ACTIVE_REQUESTS.name),
        ),
        agents=AgentsSummary(
            queries_total=sum(sum(v.values()) for v in agent_counts.values()), by_type=by_type
        ),
        costs=CostSummary(
            total_dollars=sum(u.cost_dollars for u in usage.values()),
            total_input_tokens=sum(u.input_tokens for u in usage.values()),
            total_output_tokens=sum(u.output_tokens for u in usage.values()),
            by_model=sorted(usage.values(), key=lambda u: -u.cost_dollars),
        ),
        cache=CacheSummary(
            hits=hits,
            misses=misses,
            hit_ratio=hits / (hits + misses) if hits + misses else None,
            errors=sum(v for (_, result), v in cache.items() if result == "error"),
            size_bytes=single(cat.CACHE_SIZE.name),
        ),
        auth=AuthSummary(
            success=sum(m.get("success", 0.0) for m in auth.values()),
            failure=sum(m.get("failure", 0.0) for m in auth.values()),
            by_method=dict(auth),
        ),
        permissions=PermissionSummary(
            allowed=sum(p.get("allowed", 0.0) for p in perms.values()),
            denied=sum(p.get("denied", 0.0) for p in perms.values()),
            by_permission=dict(perms),
        ),
        active_sessions=single(cat.ACTIVE_SESSIONS.name),
        custom_metrics={"families": len(custom), "series": sum(len(f.series) for f in custom)},
    )
