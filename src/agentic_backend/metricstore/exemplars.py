"""Exemplars: for the latency histograms and the cost counter, the trace of a recent observation per
bucket, so that a dashboard's slow bucket opens the trace of a query that landed in it.

Kept only while tracing is on (core/tracing.py) and only for sampled spans; shown only in OpenMetrics
(``# {trace_id="..."} value timestamp`` after a bucket's or a counter's sample, as the specification
writes them; the text format has no exemplars). Each worker keeps its own: with ``serve --workers N`` a
scrape shows the answering worker's, which is what an exemplar is (one recent example, not a total).
Memory is bounded: one exemplar per bucket of series that exist, and series are capped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass

from opentelemetry import trace

from agentic_backend.metricstore.families import MetricSpec, MetricType, format_float

Key = tuple[str, tuple[str, ...]]  # (family name, label values)


@dataclass(frozen=True, slots=True)
class Exemplar:
    trace_id: str
    value: float
    timestamp: float

    def suffix(self) -> str:
        """What follows a sample's value on its line."""
        return f' # {{trace_id="{self.trace_id}"}} {format_float(self.value)} {self.timestamp:.3f}'


class Exemplars:
    """The last exemplar of each bucket (or counter) of the families named at construction."""

    def __init__(self, families: frozenset[str]) -> None:
        self.families = families
        self._by_series: dict[Key, dict[int, Exemplar]] = {}

    def record(self, name: str, labels: tuple[str, ...], bucket: int, value: float) -> None:
        """If the current span is sampled, keep it as ``bucket``'s exemplar (0 for a counter)."""
        context = trace.get_current_span().get_span_context()
        if not (context.is_valid and context.trace_flags.sampled):
            return
        exemplar = Exemplar(format(context.trace_id, "032x"), value, time.time())
        self._by_series.setdefault((name, labels), {})[bucket] = exemplar

    def observe(self, spec: MetricSpec, labels: tuple[str, ...], value: float) -> None:
        """``value`` observed in ``spec``'s series ``labels``: its bucket's exemplar (a histogram's, found
        as the histogram finds it) or the counter's."""
        bucket = bisect_left(spec.buckets, value) if spec.type is MetricType.HISTOGRAM else 0
        self.record(spec.name, labels, bucket, value)

    def of(self, name: str, labels: tuple[str, ...]) -> dict[int, Exemplar] | None:
        return self._by_series.get((name, labels))
