"""A registry: the metric families of one page store, and a consistent snapshot of them for a scrape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from agentic_backend.metricstore.families import (
    AnyFamily,
    Family,
    MetricSpec,
    MetricType,
    Series,
)
from agentic_backend.metricstore.storage import PageStore, Slot

SERIES_OVERFLOW = MetricSpec(
    name="agentic_backend_metric_series_overflow_total",
    type=MetricType.COUNTER,
    help=(
        "Updates folded into a metric's __overflow__ series because it reached its series cap. "
        "Non-zero means a label is taking more values than it should."
    ),
    labelnames=("metric",),
)


class Sample(Protocol):
    """What exposition needs of a series: its line prefixes and where its values are; ``shown`` and
    ``text`` keep the values the last scrape showed and their lines, reused while the values stay."""

    shown: object
    text: str

    @property
    def lines(self) -> tuple[str, ...]: ...

    @property
    def slot(self) -> Slot: ...

    @property
    def labels(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class FamilySnapshot:
    """One family as a scrape shows it: ``pages[s.slot.page][s.slot.offset:]`` holds the values of ``s``."""

    spec: MetricSpec
    series: Sequence[Sample]
    pages: list[list[float]]

    def values(self, sample: Sample) -> list[float]:
        page = self.pages[sample.slot.page]
        return page[sample.slot.offset : sample.slot.offset + self.spec.width]


Snapshot = list[FamilySnapshot]


class Registry:
    """Every metric family over one page store. Names are unique, sample names included."""

    def __init__(
        self,
        store: PageStore,
        *,
        max_series_per_metric: int,
        on_allocate: Callable[[MetricSpec, tuple[str, ...], Slot], None] | None = None,
        track_overflow: bool = True,
    ) -> None:
        self.store = store
        self.max_series_per_metric = max_series_per_metric
        self._on_allocate = on_allocate
        self._families: dict[str, AnyFamily] = {}
        self._overflow: Family[Series] | None = None
        if track_overflow:
            self._overflow = self.register(SERIES_OVERFLOW)

    def register(
        self, spec: MetricSpec, *, max_series: int | None = None, strict: bool = False, eager: bool = True
    ) -> AnyFamily:
        if spec.name in self._families:
            raise ValueError(f"metric {spec.name} is already registered")
        family: AnyFamily = Family(
            spec,
            self.store,
            max_series=max_series or self.max_series_per_metric,
            strict=strict,
            on_overflow=self._count_overflow,
            on_allocate=self._on_allocate,
            eager=eager,
        )
        self._families[spec.name] = family
        return family

    def _count_overflow(self, metric: str) -> None:
        if self._overflow is not None:
            self._overflow.labels(metric).inc()

    def get(self, name: str) -> AnyFamily | None:
        return self._families.get(name)

    def series_count(self) -> int:
        return sum(len(f) for f in self._families.values())

    def families(self) -> list[AnyFamily]:
        return list(self._families.values())

    def spec(self, name: str) -> MetricSpec | None:
        family = self._families.get(name)
        return family.spec if family is not None else None

    def snapshot(self) -> Snapshot:
        """List the series, then copy the pages: pages only grow, so every listed series is in the copy."""
        listed = [(f.spec, f.series()) for f in self._families.values()]
        pages = self.store.copy()
        return [FamilySnapshot(spec, series, pages) for spec, series in listed]
