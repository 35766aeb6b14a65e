"""Metric families and their series, stored in pages (see ``storage``).

A ``MetricSpec`` declares a family once: name, type, help, label names, histogram buckets and how one scrape
combines it over worker processes. A ``Family`` hands out ``Series`` per label set; a series caches its
exposition lines so that rendering a scrape only formats numbers.

Cardinality is bounded by construction: once a family holds ``max_series`` label sets, a new label set is
folded into one overflow series (every label ``__overflow__``) and
``agentic_backend_metric_series_overflow_total{metric}`` counts the folded updates. Families that must refuse
instead (custom metrics) pass ``strict=True`` and get ``SeriesLimitReached``.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar, cast

from agentic_backend.metricstore.storage import FloatView, PageStore, Slot

logger = logging.getLogger(__name__)

OVERFLOW_LABEL_VALUE = "__overflow__"
# The slot of a series storage could not take (Family._create): on no page; it has a list of its own.
UNSTORED = Slot(-1, 0)


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Aggregation(StrEnum):
    """How one scrape combines a series over ``serve --workers N`` processes."""

    SUM = "sum"  # counters and histograms: dead workers' counts are kept in an archive
    LIVESUM = "livesum"  # a gauge each worker owns a part of (active_requests): live workers only
    MAX = "max"  # a gauge every worker reports alike (build info)
    SHARED = "shared"  # read from shared state at each scrape: the answering worker's fresh value wins


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    type: MetricType
    help: str
    labelnames: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    aggregation: Aggregation = Aggregation.SUM
    initial_labels: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def width(self) -> int:
        """Slots per series: the finite buckets, +Inf, and the sum for a histogram; one otherwise."""
        return len(self.buckets) + 2 if self.type is MetricType.HISTOGRAM else 1

    @property
    def family_name(self) -> str:
        """The OpenMetrics family name: a counter's name without ``_total``."""
        if self.type is MetricType.COUNTER and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name

    def sample_names(self) -> tuple[str, ...]:
        if self.type is MetricType.HISTOGRAM:
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_float(value: float) -> str:
    """Go's formatting of a float, as Prometheus and OpenMetrics expect it."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _label_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Series:
    """One label set of a counter or gauge."""

    __slots__ = ("_offset", "_view", "labels", "lines", "shown", "slot", "text")

    def __init__(self, spec: MetricSpec, labels: tuple[str, ...], view: FloatView, slot: Slot) -> None:
        self.labels = labels
        self.slot = slot
        self._view = view
        self._offset = slot.offset
        self.lines = sample_lines(spec, labels)
        self.shown: object = None  # the values the last scrape showed, and their exposition ``text``
        self.text = ""

    def inc(self, amount: float = 1.0) -> None:
        self._view[self._offset] += amount

    def dec(self, amount: float = 1.0) -> None:
        self._view[self._offset] -= amount

    def set(self, value: float) -> None:
        self._view[self._offset] = float(value)

    def get(self) -> float:
        return float(self._view[self._offset])

    @property
    def stored(self) -> bool:
        """False for a series storage could not take (see ``Family._create``): keep no reference to it,
        the family's next ``labels()`` tries again."""
        return self.slot.page >= 0

    def location(self) -> tuple[FloatView, int]:
        """The page and slot of this series' value, for a hot path that updates it in place."""
        return self._view, self._offset


class HistogramSeries(Series):
    """One label set of a histogram: per-bucket counts (not cumulative) then the sum."""

    __slots__ = ("_bounds", "_sum_offset")

    def __init__(self, spec: MetricSpec, labels: tuple[str, ...], view: FloatView, slot: Slot) -> None:
        super().__init__(spec, labels, view, slot)
        self._bounds = spec.buckets
        self._sum_offset = slot.offset + len(spec.buckets) + 1

    def observe(self, value: float) -> None:
        view = self._view
        # bisect_left: a value equal to an edge belongs to that edge's bucket (le = "less or equal").
        view[self._offset + bisect_left(self._bounds, value)] += 1.0
        view[self._sum_offset] += value

    def layout(self) -> tuple[FloatView, int, tuple[float, ...], int]:
        """Page, first bucket slot, bucket edges and sum slot, for a hot path that observes in place."""
        return self._view, self._offset, self._bounds, self._sum_offset

    def count(self) -> float:
        view = self._view
        return float(sum(view[i] for i in range(self._offset, self._sum_offset)))

    def sum(self) -> float:
        return float(self._view[self._sum_offset])


def sample_lines(spec: MetricSpec, labels: tuple[str, ...]) -> tuple[str, ...]:
    """The text before the value of each sample line of a series, e.g. ``'x_total{a="b"} '``."""
    if spec.type is not MetricType.HISTOGRAM:
        return (f"{spec.name}{_label_text(spec.labelnames, labels)} ",)
    edges = [format_float(b) for b in spec.buckets] + ["+Inf"]
    lines = []
    for edge in edges:
        le = 'le="' + edge + '"'
        lines.append(f"{spec.name}_bucket{_label_text(spec.labelnames, labels, le)} ")
    lines.append(f"{spec.name}_sum{_label_text(spec.labelnames, labels)} ")
    lines.append(f"{spec.name}_count{_label_text(spec.labelnames, labels)} ")
    return tuple(lines)


class SeriesLimitReached(Exception):
    """A strict family is full."""


S = TypeVar("S", bound=Series)


class Family(Generic[S]):
    """All series of one metric, typed by its series: ``Family[HistogramSeries]`` for a histogram (it
    observes), ``Family[Series]`` otherwise. ``Registry.register`` returns ``Family[Any]``; the code that
    holds a family declares which (``BuiltinMetrics``), and a test holds the declarations to the specs."""

    def __init__(
        self,
        spec: MetricSpec,
        store: PageStore,
        *,
        max_series: int,
        strict: bool = False,
        on_overflow: Callable[[str], None] | None = None,
        on_allocate: Callable[[MetricSpec, tuple[str, ...], Slot], None] | None = None,
        eager: bool = True,
    ) -> None:
        """``eager``: create the series of an unlabelled family and ``initial_labels`` now, so they are
        exported (as zero) from start-up. A family shared between processes is not eager: the process that
        defined it allocated them."""
        self.spec = spec
        self.max_series = max_series
        self._store = store
        self._strict = strict
        self._on_overflow = on_overflow
        self._on_allocate = on_allocate
        self._series: dict[tuple[str, ...], S] = {}
        self._lock = threading.Lock()
        self._overflow: S | None = None
        self._storage_failures = 0
        self._kind = cast("type[S]", HistogramSeries if spec.type is MetricType.HISTOGRAM else Series)
        if eager:
            if not spec.labelnames:
                self._create(())
            for labels in spec.initial_labels:
                self._create(labels)

    def __len__(self) -> int:
        return len(self._series)

    def has(self, labels: tuple[str, ...]) -> bool:
        return labels in self._series

    def series(self) -> list[S]:
        return list(self._series.values())

    def labels(self, *values: str) -> S:
        found = self._series.get(values)
        if found is not None:
            return found
        with self._lock:
            found = self._series.get(values)
            if found is not None:
                return found
            if len(values) != len(self.spec.labelnames):
                raise ValueError(f"{self.spec.name} takes labels {self.spec.labelnames}, got {values!r}")
            if len(self._series) >= self.max_series:
                return self._fold()
            return self._create(values)

    def lines_for(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        """The exposition line prefixes of a label set, cached when this process has the series."""
        found = self._series.get(labels)
        return found.lines if found is not None else sample_lines(self.spec, labels)

    def adopt(self, labels: tuple[str, ...], slot: Slot) -> S:
        """Attach a series that another process allocated in a shared store."""
        with self._lock:
            found = self._series.get(labels)
            if found is None:
                found = self._kind(self.spec, labels, self._store.view(slot.page), slot)
                self._series[labels] = found
            return found

    def _create(self, labels: tuple[str, ...]) -> S:
        try:
            slot = self._store.allocate(self.spec.width)
            series = self._kind(self.spec, labels, self._store.view(slot.page), slot)
            if self._on_allocate is not None:
                self._on_allocate(self.spec, labels, slot)
        except OSError as exc:  # the metrics folder's disk is full, say
            if self._strict:  # a custom record: refused (core.errors maps a full disk to 503)
                raise
            # A built-in metric never fails the request it measures: this series goes uncounted (a page
            # of its own, not exported) until storage works again; the next use tries again.
            self._storage_failures += 1
            if self._storage_failures == 1 or self._storage_failures % 1000 == 0:
                logger.warning(
                    "metric %s: could not store a new series (%s; %d times): it is not counted",
                    self.spec.name,
                    exc,
                    self._storage_failures,
                )
            return self._kind(self.spec, labels, [0.0] * self.spec.width, UNSTORED)
        self._series[labels] = series
        return series

    def _fold(self) -> S:
        if self._strict:
            raise SeriesLimitReached(self.spec.name)
        if self._on_overflow is not None:
            self._on_overflow(self.spec.name)
        if self._overflow is not None:
            return self._overflow
        key = (OVERFLOW_LABEL_VALUE,) * len(self.spec.labelnames)
        overflow = self._series.get(key) or self._create(key)
        if overflow.stored:
            self._overflow = overflow
        return overflow


# What a registry hands out before its holder says which kind of family it is.
AnyFamily = Family[Any]
