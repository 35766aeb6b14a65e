"""The merge of one scrape over worker processes, planned once and replayed on every scrape.

Which series exist changes rarely (a new label set, a worker that starts or dies); their values change all
the time. So the layout of the merged result (every series' place in one flat list of floats, its
exposition lines, the order a scrape lists them in) and, for every worker, the list of where each of its
values goes, are built only when the set of series changes (``MergePlan``). A scrape then copies each
worker's pages out of their mapped files (``memoryview.tolist()``, in C) and adds them into a copy of the
template: a few additions per series, with no dictionary lookup, label hashing, sorting or object creation.
``bench/scrape_merge.py`` measures it against prometheus_client's multiprocess collector, which rebuilds
all of that on every scrape.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field

from agentic_backend.monitoring.metrics import Aggregation, MetricSpec
from agentic_backend.monitoring.registry import FamilySnapshot, Registry, Snapshot
from agentic_backend.monitoring.storage import Slot

Entry = tuple[str, tuple[str, ...], Slot]  # a worker's series: metric name, label values, where it lives
_NO_VALUE = float("-inf")  # the start of a MAX series, below anything a worker reports
_ADD_STEP = 1_000  # values added between two yields of a scrape's merge


@dataclass(slots=True)
class Merged:
    """A series combined over workers; its values are ``pages[slot.page]`` of its snapshot."""

    lines: tuple[str, ...]
    slot: Slot
    labels: tuple[str, ...]


@dataclass(slots=True)
class _WorkerPlan:
    """Where one worker's values go: single values summed, wider series (histograms) summed slot by
    slot, and values that take the maximum."""

    pages: int = 0
    singles: list[tuple[int, int, int]] = field(default_factory=list)  # (destination, page, offset)
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)  # (destination, page, offset, width)
    maxima: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class MergePlan:
    signature: object
    template: list[float]
    families: list[tuple[MetricSpec, list[Merged]]]
    workers: dict[str, _WorkerPlan]
    archive: list[tuple[int, Sequence[float]]]  # (destination, values) of the archive's series (all SUM)
    maxima: list[int]  # the slots of MAX series

    def start(self) -> list[float]:
        return self.template.copy()

    def add_worker(
        self, worker: str, pages: Sequence[Sequence[float]], values: list[float]
    ) -> Generator[None, None, None]:
        """Add one worker's values, yielding every ``_ADD_STEP`` series (a few hundredths of a ms each)."""
        plan = self.workers.get(worker)
        if plan is None:
            return
        singles = plan.singles
        for start in range(0, len(singles), _ADD_STEP):
            for destination, page, offset in singles[start : start + _ADD_STEP]:
                values[destination] += pages[page][offset]
            yield
        for destination, page, offset, width in plan.spans:
            source = pages[page]
            for k in range(width):
                values[destination + k] += source[offset + k]
        for destination, page, offset in plan.maxima:
            value = pages[page][offset]
            if value > values[destination]:
                values[destination] = value

    def add_archive(self, values: list[float]) -> None:
        for destination, archived in self.archive:
            for k, value in enumerate(archived):
                values[destination + k] += value

    def snapshot(self, values: list[float]) -> Snapshot:
        for i in self.maxima:
            if values[i] == _NO_VALUE:  # cannot happen for a series some worker holds; kept finite regardless
                values[i] = 0.0
        return [FamilySnapshot(spec, merged, [values]) for spec, merged in self.families]


_STEP = 2_000  # series handled between two yields of a plan's build (about a millisecond)


def build_plan(
    registry: Registry,
    sources: Iterable[tuple[str, bool, Sequence[Entry]]],
    archive: Sequence[tuple[str, Sequence[str], Sequence[float]]],
    shared: set[str],
    signature: object,
    lines: dict[tuple[str, tuple[str, ...]], tuple[str, ...]],
) -> Generator[None, None, MergePlan]:
    """The layout of the merged snapshot and each worker's part in it, yielding every ``_STEP`` series
    so that a rebuild (a new series somewhere) never holds the event loop for long. ``sources`` are
    (worker, whether it is the answering worker, its entries); a SHARED metric (or one named in
    ``shared``) is read from the answering worker only. ``lines`` caches each series' exposition lines
    across rebuilds: formatting them is most of a rebuild's cost."""
    contributions: list[tuple[str, tuple[str, tuple[str, ...]], Slot, MetricSpec]] = []
    by_family: dict[str, set[tuple[str, ...]]] = {}
    for worker, own, entries in sources:
        for n, (name, labels, slot) in enumerate(entries):
            if n % _STEP == _STEP - 1:
                yield
            spec = registry.spec(name)
            if spec is None or (not own and (spec.aggregation is Aggregation.SHARED or name in shared)):
                continue
            contributions.append((worker, (name, labels), slot, spec))
            by_family.setdefault(name, set()).add(labels)
    archived: list[tuple[tuple[str, tuple[str, ...]], Sequence[float]]] = []
    for name, archived_labels, values in archive:
        if registry.spec(name) is not None:
            archived.append(((name, tuple(archived_labels)), values))
            by_family.setdefault(name, set()).add(tuple(archived_labels))

    position: dict[tuple[str, tuple[str, ...]], int] = {}
    template: list[float] = []
    families: list[tuple[MetricSpec, list[Merged]]] = []
    for family in registry.families():
        spec = family.spec
        start = _NO_VALUE if spec.aggregation is Aggregation.MAX else 0.0
        merged = []
        for n, labels in enumerate(sorted(by_family.get(spec.name, ()))):
            if n % _STEP == _STEP - 1:
                yield
            key = (spec.name, labels)
            offset = len(template)
            position[key] = offset
            found = lines.get(key)
            if found is None:
                found = lines[key] = family.lines_for(labels)
            merged.append(Merged(found, Slot(0, offset), labels))
            template.extend([start] * spec.width)
        families.append((spec, merged))

    workers: dict[str, _WorkerPlan] = {}
    for n, (worker, key, slot, spec) in enumerate(contributions):
        if n % _STEP == _STEP - 1:
            yield
        plan = workers.setdefault(worker, _WorkerPlan())
        plan.pages = max(plan.pages, slot.page + 1)
        destination = position[key]
        if spec.aggregation is Aggregation.MAX:
            plan.maxima.append((destination, slot.page, slot.offset))
        elif spec.width == 1:
            plan.singles.append((destination, slot.page, slot.offset))
        else:
            plan.spans.append((destination, slot.page, slot.offset, spec.width))
    for plan in workers.values():  # in page order: the copies are read front to back
        plan.singles.sort(key=lambda item: (item[1], item[2]))
    maxima = [i for i, start in enumerate(template) if start == _NO_VALUE]
    archive_plan = [(position[k], v) for k, v in archived]
    return MergePlan(signature, template, families, workers, archive_plan, maxima)
