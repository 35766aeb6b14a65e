"""Custom metrics recorded through ``POST /api/v1/monitoring/record``.

Every record is checked before any is applied (a batch is all or nothing), and everything that could
make ``/metrics`` invalid or unbounded is refused with a sentence saying what to change: names and label
names outside Prometheus' grammar, names the service or Prometheus itself uses (including a built-in
metric's ``_bucket``/``_sum``/``_count`` series and OpenMetrics family names), a type, label set or bucket
layout that differs from the metric's first record, negative counter increments, NaN and infinities, too
many labels, and too many series per metric or in all.

With ``serve --workers N`` the custom metrics live in one store shared by all workers (pages and a
journal under the multiprocess folder, updated under a file lock), so caps and conflicts hold across
workers and a gauge set in one worker reads the same in every scrape.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentic_backend.core.config import Settings
from agentic_backend.metricstore.families import (
    AnyFamily,
    HistogramSeries,
    MetricSpec,
    MetricType,
    Series,
    sample_lines,
)
from agentic_backend.metricstore.multiprocess import file_lock
from agentic_backend.metricstore.naming import label_problem, lint_problem, occupied_names, reserved_problem
from agentic_backend.metricstore.registry import Registry, Snapshot
from agentic_backend.metricstore.storage import Journal, LocalPages, MmapPages, PageStore, Slot
from agentic_backend.monitoring.errors import InvalidMetric, MetricConflict, SeriesLimitExceeded
from agentic_backend.monitoring.schemas import (
    MAX_LABEL_VALUE,
    CounterRecord,
    CustomMetricRecord,
    GaugeOperation,
    GaugeRecord,
    HistogramRecord,
    RecordedMetric,
)

# What a series and a family cost against AGENTIC_CUSTOM_METRICS_MAX_BYTES beyond their exposition text:
# the Python objects that hold them (a Series, its tuples, dict slots, the page slots; a Family and its
# spec), rounded up from what bench/hostile_memory.py measures for the smallest series (10,000 of them
# hold 4.4 MB of Python heap, about 440 bytes each), and a sample value as rendered (up to 25 characters,
# the repr of a float).
SERIES_OVERHEAD_BYTES = 768
FAMILY_OVERHEAD_BYTES = 1024
VALUE_BYTES = 25
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# prometheus_client's defaults: web-request latencies from 5 ms to 10 s.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def series_cost(spec: MetricSpec, labels: tuple[str, ...]) -> int:
    """Bytes one series takes: its exposition lines as sent (UTF-8), its label values and its objects."""
    lines = sample_lines(spec, labels)
    text = sum(len(line.encode()) + VALUE_BYTES for line in lines)
    return text + sum(len(value.encode()) for value in labels) + SERIES_OVERHEAD_BYTES


def family_cost(spec: MetricSpec) -> int:
    """Bytes one family takes beyond its series: its HELP and TYPE lines in both formats, and its objects."""
    return 2 * (len(spec.help.encode()) + 2 * len(spec.name) + 32) + FAMILY_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class _Plan:
    spec: MetricSpec
    labels: tuple[str, ...]
    record: CustomMetricRecord


class CustomMetrics:
    """The custom-metric store and its rules."""

    def __init__(self, settings: Settings, builtin: Sequence[MetricSpec], folder: Path | None = None) -> None:
        self._max_labels = settings.custom_metrics_max_labels
        self._max_per_metric = settings.custom_metrics_max_series_per_metric
        self._max_total = settings.custom_metrics_max_series_total
        self.max_bytes = settings.custom_metrics_max_bytes
        self.bytes_used = 0  # series_cost and family_cost of everything registered, in every worker
        self._taken: dict[str, str] = {}
        for spec in builtin:
            for name in occupied_names(spec):
                self._taken[name] = spec.name
        self._builtin = frozenset(self._taken)
        store: PageStore
        self._journal: Journal | None = None
        self._folder = folder
        if folder is None:
            store = LocalPages()
        else:
            store = MmapPages(folder, "custom")
            self._journal = Journal(folder / "custom.journal")
        self._store = store
        self._thread_lock = threading.Lock()
        self.registry = Registry(
            store,
            max_series_per_metric=self._max_per_metric,
            on_allocate=self._journal_series if self._journal is not None else None,
            track_overflow=False,
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            if self._folder is None:
                yield
                return
            with file_lock(self._folder / ".custom.lock"):
                self._sync()
                yield

    def _journal_series(self, spec: MetricSpec, labels: tuple[str, ...], slot: Slot) -> None:
        assert self._journal is not None
        self._journal.append({"m": spec.name, "l": list(labels), "p": slot.page, "o": slot.offset})

    def _sync(self) -> None:
        """Take in the families and series other workers created since the last look."""
        assert self._journal is not None
        assert isinstance(self._store, MmapPages)
        for record in self._journal.read_new():
            definition = record.get("family")
            if isinstance(definition, dict):
                spec = _spec_from_json(definition)
                if self.registry.get(spec.name) is None:
                    self._register(spec)
                continue
            family = self.registry.get(str(record["m"]))
            labels = record["l"]
            if family is None or not isinstance(labels, list):
                continue
            slot = Slot(int(str(record["p"])), int(str(record["o"])))
            self._store.adopt(slot, family.spec.width)
            if not family.has(tuple(labels)):
                self.bytes_used += series_cost(family.spec, tuple(labels))
            family.adopt(tuple(labels), slot)

    def _register(self, spec: MetricSpec) -> AnyFamily:
        for name in occupied_names(spec):
            self._taken[name] = spec.name
        self.bytes_used += family_cost(spec)
        return self.registry.register(spec, max_series=self._max_per_metric, strict=True, eager=False)

    def snapshot(self) -> Snapshot:
        with self._locked():
            return self.registry.snapshot()

    def record(self, records: Sequence[CustomMetricRecord]) -> list[RecordedMetric]:
        """Check every record, then apply them all; raise (applying none) on the first bad one."""
        with self._locked():
            plans = self._check(records)
            # Every series is stored before any value moves: storage that fails (a full disk) raises
            # here, and the batch has changed nothing (at most a new series shows its zero).
            stored = [self._series_for(plan) for plan in plans]
            return [self._apply(plan, series) for plan, series in zip(plans, stored, strict=True)]

    # -- checking ------------------------------------------------------------------------------------

    def _check(self, records: Sequence[CustomMetricRecord]) -> list[_Plan]:
        pending: dict[str, MetricSpec] = {}
        new_series: set[tuple[str, tuple[str, ...]]] = set()
        new_per_metric: Counter[str] = Counter()
        total = self.registry.series_count()
        new_bytes = 0
        projected: dict[tuple[str, tuple[str, ...]], float] = {}  # each series' value (a histogram's sum)
        plans = []
        for index, record in enumerate(records):
            where = f"record {index} ({record.name!r}): " if len(records) > 1 else f"{record.name!r}: "
            try:
                spec = self._spec_for(record, pending)
                labels = self._check_labels(record, spec)
                _check_value(record)
            except (InvalidMetric, MetricConflict) as exc:
                raise type(exc)(where + exc.detail) from None
            family = self.registry.get(spec.name)
            key = (spec.name, labels)
            exists = family is not None and family.has(labels)
            before = projected.get(key)
            if before is None:
                before = _current(family.labels(*labels)) if family is not None and exists else 0.0
            after = _after(record, before)
            if not math.isfinite(after):  # a float overflow: the series would stay infinite for good
                # 409, not 422: the record is valid on its own; it conflicts with the series' value.
                what = "sum" if isinstance(record, HistogramRecord) else "value"
                raise MetricConflict(
                    f"{where}this would make the series' {what} infinite ({before!r} and {record.value!r} "
                    "overflow a 64-bit float); nothing was recorded."
                )
            projected[key] = after
            if not exists and key not in new_series:
                in_family = (len(family) if family is not None else 0) + new_per_metric[spec.name]
                if in_family >= self._max_per_metric:
                    raise SeriesLimitExceeded(
                        f"{where}metric {spec.name} already has {in_family} series, the most allowed "
                        f"(AGENTIC_CUSTOM_METRICS_MAX_SERIES_PER_METRIC={self._max_per_metric}); reuse "
                        "label values instead of putting ids or free text in labels."
                    )
                if total + len(new_series) >= self._max_total:
                    raise SeriesLimitExceeded(
                        f"{where}custom metrics already have {total + len(new_series)} series, the most "
                        f"allowed (AGENTIC_CUSTOM_METRICS_MAX_SERIES_TOTAL={self._max_total})."
                    )
                cost = series_cost(spec, labels)
                if family is None and new_per_metric[spec.name] == 0:
                    cost += family_cost(spec)
                if self.bytes_used + new_bytes + cost > self.max_bytes:
                    raise SeriesLimitExceeded(
                        f"{where}this series would take {cost} bytes, and custom metrics already take "
                        f"{self.bytes_used + new_bytes} of the {self.max_bytes} allowed "
                        "(AGENTIC_CUSTOM_METRICS_MAX_BYTES); use fewer or shorter labels and fewer buckets."
                    )
                new_bytes += cost
                new_series.add(key)
                new_per_metric[spec.name] += 1
            plans.append(_Plan(spec, labels, record))
        return plans

    def _spec_for(self, record: CustomMetricRecord, pending: dict[str, MetricSpec]) -> MetricSpec:
        name = record.name
        kind = MetricType(record.metric_type.value)
        if not _METRIC_NAME.fullmatch(name):
            raise InvalidMetric(
                "a metric name must match [a-zA-Z_:][a-zA-Z0-9_:]* (letters, digits, '_' and ':', "
                "not starting with a digit)."
            )
        reserved = reserved_problem(name)
        if reserved is not None:
            raise MetricConflict(reserved)
        if kind is MetricType.COUNTER and not name.endswith("_total"):
            raise InvalidMetric(f"a counter's name must end in _total; use {name}_total.")
        if kind is not MetricType.COUNTER and name.endswith("_total"):
            raise InvalidMetric(f"only counters end in _total; this is a {kind.value}, rename it.")

        existing = self.registry.spec(name) or pending.get(name)
        labelnames = tuple(sorted(record.labels))
        if existing is None:
            owner = self._taken.get(name)
            if owner is not None and name in self._builtin:
                raise MetricConflict(
                    f"the name belongs to the built-in metric {owner}; custom metrics cannot write to it."
                )
            spec = MetricSpec(
                name,
                kind,
                " ".join((record.help or "").split()) or f"Custom metric {name}.",
                labelnames,
                _check_buckets(record.buckets) if isinstance(record, HistogramRecord) else (),
            )
            clashes = sorted(
                n
                for n in occupied_names(spec)
                if n in self._taken or any(n in occupied_names(p) for p in pending.values())
            )
            if clashes:
                other = self._taken.get(clashes[0], "another metric in this batch")
                raise MetricConflict(
                    f"its series names ({', '.join(clashes)}) are already taken by {other}; "
                    "choose another name."
                )
            problem = lint_problem(name, kind)
            if problem is not None:
                raise InvalidMetric(
                    f"{problem} (Prometheus' naming rules, as promtool check metrics applies them)."
                )
            pending[name] = spec
            return spec
        if existing.type is not kind:
            raise MetricConflict(
                f"{name} was recorded as a {existing.type.value}; it cannot also be a {kind.value}."
            )
        if existing.labelnames != labelnames:
            raise MetricConflict(
                f"{name} has labels {list(existing.labelnames)}; every record must give exactly those "
                f"(this one gave {list(labelnames)})."
            )
        buckets = record.buckets if isinstance(record, HistogramRecord) else None
        if buckets is not None and _check_buckets(buckets) != existing.buckets:
            raise MetricConflict(
                f"{name} has buckets {list(existing.buckets)}; omit 'buckets' or give the same ones."
            )
        return existing

    def _check_labels(self, record: CustomMetricRecord, spec: MetricSpec) -> tuple[str, ...]:
        if len(record.labels) > self._max_labels:
            raise InvalidMetric(
                f"{len(record.labels)} labels given, at most {self._max_labels} allowed "
                "(AGENTIC_CUSTOM_METRICS_MAX_LABELS)."
            )
        for name, value in record.labels.items():
            if not _LABEL_NAME.fullmatch(name):
                raise InvalidMetric(f"label name {name!r} is invalid: it must match [a-zA-Z_][a-zA-Z0-9_]*.")
            problem = label_problem(name)
            if problem is not None:
                raise InvalidMetric(f"label name {name!r}: {problem}; rename it.")
            if len(value) > MAX_LABEL_VALUE:
                raise InvalidMetric(
                    f"label {name}'s value is {len(value)} characters long; at most {MAX_LABEL_VALUE}."
                )
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidMetric(
                    f"label {name}'s value is not valid Unicode text (it has an unpaired surrogate)."
                ) from None
        return tuple(record.labels[n] for n in spec.labelnames)

    # -- applying ------------------------------------------------------------------------------------

    def _series_for(self, plan: _Plan) -> Series:
        family = self.registry.get(plan.spec.name)
        if family is None:
            if self._journal is not None:  # journaled first: a family the journal lacks exists nowhere
                self._journal.append({"family": _spec_to_json(plan.spec)})
            family = self._register(plan.spec)
        new = not family.has(plan.labels)
        series: Series = family.labels(*plan.labels)
        if new:
            self.bytes_used += series_cost(plan.spec, plan.labels)
        return series

    def _apply(self, plan: _Plan, series: Series) -> RecordedMetric:
        record = plan.record
        result = RecordedMetric(name=record.name, metric_type=record.metric_type, labels=dict(record.labels))
        if isinstance(series, HistogramSeries):
            series.observe(record.value)
            result.count, result.sum = series.count(), series.sum()
            return result
        operation = record.operation if isinstance(record, GaugeRecord) else GaugeOperation.INC
        if operation is GaugeOperation.INC:
            series.inc(record.value)
        elif operation is GaugeOperation.DEC:
            series.dec(record.value)
        else:
            series.set(record.value)
        result.value = series.get()
        return result


def _current(series: Series) -> float:
    return series.sum() if isinstance(series, HistogramSeries) else series.get()


def _after(record: CustomMetricRecord, before: float) -> float:
    """The series' value (a histogram's sum) once ``record`` is applied to ``before``."""
    if isinstance(record, GaugeRecord) and record.operation is GaugeOperation.SET:
        return record.value
    if isinstance(record, GaugeRecord) and record.operation is GaugeOperation.DEC:
        return before - record.value
    return before + record.value


def _check_value(record: CustomMetricRecord) -> None:
    # The models refuse these too (with pydantic's words); these sentences say what to do instead.
    if not math.isfinite(record.value):
        raise InvalidMetric("the value must be a finite number (not NaN or infinite).")
    if isinstance(record, CounterRecord) and record.value < 0:
        raise InvalidMetric("a counter only goes up: the increment must be >= 0 (use a gauge to go down).")
    if isinstance(record, HistogramRecord) and record.value < 0:
        # OpenMetrics requires a histogram's _sum to be counter-like, so observations cannot be negative.
        raise InvalidMetric("histogram observations must be >= 0 (use a gauge for signed values).")


def _check_buckets(buckets: list[float] | None) -> tuple[float, ...]:
    if buckets is None:
        return DEFAULT_BUCKETS
    if not buckets:
        raise InvalidMetric("'buckets' must list at least one upper bound.")
    if not all(math.isfinite(b) for b in buckets):
        raise InvalidMetric("bucket bounds must be finite (+Inf is always added).")
    buckets = sorted(buckets)
    if any(a == b for a, b in itertools.pairwise(buckets)):
        raise InvalidMetric("each bucket bound must be given once.")
    if buckets[0] < 0:
        # Observations are >= 0 (OpenMetrics: a histogram with negative buckets has no _sum), so a
        # negative bound could only ever hold nothing.
        raise InvalidMetric("bucket bounds must be >= 0, as observations are.")
    return tuple(float(b) + 0.0 for b in buckets)  # + 0.0 turns -0.0 into 0.0


def _spec_to_json(spec: MetricSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "type": spec.type.value,
        "help": spec.help,
        "labelnames": list(spec.labelnames),
        "buckets": list(spec.buckets),
    }


def _spec_from_json(data: dict[str, Any]) -> MetricSpec:
    return MetricSpec(
        data["name"],
        MetricType(data["type"]),
        data["help"],
        tuple(data["labelnames"]),
        tuple(data["buckets"]),
    )
