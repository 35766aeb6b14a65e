"""The merge of one scrape over worker processes, planned once and replayed on every scrape.

Which series exist changes rarely (a new label set, a worker that starts or dies); their values change all
the time. So the layout of the merged result is built only when the set of series changes (``MergePlan``):
every series' place in one flat list of floats, its exposition lines, the order a scrape lists them in, and
where each of its contributions (a worker's slot, the archive's) lies in the concatenation of every
worker's pages. A scrape then copies each worker's pages out of their mapped files
(``memoryview.tolist()``, in C), concatenates them, and builds the merged values without a Python-level
loop over series: series are grouped by how many sources contribute to them, and a group of ``c`` is ``c``
gathers (``operator.itemgetter``) summed by ``map(operator.add, ...)``, all in C. Summation order is the
sources' order (workers by name, the archive last), the same on every scrape, so a counter's total never
moves backwards by a rounding difference. ``bench/scrape_merge.py`` measures it against
prometheus_client's multiprocess collector, which rebuilds all of that on every scrape.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass

from agentic_backend.metricstore.families import Aggregation, MetricSpec
from agentic_backend.metricstore.registry import FamilySnapshot, Registry, Snapshot
from agentic_backend.metricstore.storage import PAGE_SLOTS, Slot

Entry = tuple[str, tuple[str, ...], Slot]  # a worker's series: metric name, label values, where it lives
Key = tuple[str, tuple[str, ...]]
Gather = Callable[[Sequence[float]], Sequence[float]]
_PIECE = 4_096  # values gathered in one C call: about a hundred microseconds between two yields


@dataclass(slots=True)
class Merged:
    """A series combined over workers; its values are ``pages[slot.page]`` of its snapshot."""

    lines: tuple[str, ...]
    slot: Slot
    labels: tuple[str, ...]
    shown: object = None  # see ``registry.Sample``
    text: str = ""


def _gather(indices: Sequence[int]) -> Gather:
    if len(indices) == 1:  # itemgetter of one index returns the item, not a tuple
        index = indices[0]
        return lambda values: (values[index],)
    return operator.itemgetter(*indices)


@dataclass(slots=True)
class MergePlan:
    signature: object
    families: list[tuple[MetricSpec, list[Merged]]]
    pages: dict[str, int]  # how many pages of each worker to read, in the order to concatenate them
    archive: list[float]  # the archive's values, concatenated after the workers' pages
    # Summed series, laid out first, by piece: per contributor rank, the gather of its values.
    sums: list[list[Gather]]
    maxima: list[list[int]]  # MAX series, laid out after them in this order: each one's sources

    def merge(self, sources: list[float]) -> Generator[None, None, list[float]]:
        """The merged values from ``sources``: the workers' pages in ``pages`` order, then the archive
        (``sources`` is extended with it). Yields between pieces."""
        sources.extend(self.archive)
        values: list[float] = []
        add = operator.add
        for gathers in self.sums:
            total: Iterable[float] = gathers[0](sources)
            for gather in gathers[1:]:
                total = map(add, total, gather(sources))
            values.extend(total)
            yield
        for contributors in self.maxima:
            values.append(max(sources[i] for i in contributors))  # a series has at least one source
        return values

    def snapshot(self, values: list[float]) -> Snapshot:
        return [FamilySnapshot(spec, merged, [values]) for spec, merged in self.families]


# Series handled between two yields of a plan's build: well under a millisecond even on a loaded machine
# (2,000 took 10-20 ms there). A yield is cheap: ``collect_async`` hands the event loop over only once its
# time slice is spent (timeslice.py), so a fine step bounds the wait without stretching the build.
_STEP = 200


def _contributions(
    registry: Registry,
    sources: Iterable[tuple[str, bool, Sequence[Entry]]],
    archive: Sequence[tuple[str, Sequence[str], Sequence[float]]],
    shared: set[str],
) -> Generator[None, None, tuple[dict[Key, list[int]], dict[str, int], list[float]]]:
    """Per series, the index of its first value in each source (the workers' pages concatenated, then the
    archive's values); each worker's page count; the archive's values."""
    contributors: dict[Key, list[int]] = {}  # per series, the index of its first value in each source
    pages: dict[str, int] = {}
    base = 0
    for worker, own, entries in sources:
        taken: list[tuple[Key, Slot]] = []
        for n, (name, labels, slot) in enumerate(entries):
            if n % _STEP == _STEP - 1:
                yield
            spec = registry.spec(name)
            if spec is None or (not own and (spec.aggregation is Aggregation.SHARED or name in shared)):
                continue
            taken.append(((name, labels), slot))
        count = max((slot.page + 1 for _, slot in taken), default=0)
        pages[worker] = count
        for n, (key, slot) in enumerate(taken):
            if n % _STEP == _STEP - 1:
                yield
            contributors.setdefault(key, []).append(base + slot.page * PAGE_SLOTS + slot.offset)
        base += count * PAGE_SLOTS
    archived: list[float] = []
    for n, (name, archived_labels, values) in enumerate(archive):
        if n % _STEP == _STEP - 1:
            yield
        if registry.spec(name) is not None:
            contributors.setdefault((name, tuple(archived_labels)), []).append(base + len(archived))
            archived.extend(values)
    return contributors, pages, archived


def build_plan(
    registry: Registry,
    sources: Iterable[tuple[str, bool, Sequence[Entry]]],
    archive: Sequence[tuple[str, Sequence[str], Sequence[float]]],
    shared: set[str],
    signature: object,
    lines: dict[Key, tuple[str, ...]],
) -> Generator[None, None, MergePlan]:
    """The layout of the merged snapshot and where each contribution comes from, yielding every ``_STEP``
    series so that a rebuild (a new series somewhere) never holds the event loop for long. ``sources`` are
    (worker, whether it is the answering worker, its entries) in the order their pages are concatenated; a
    SHARED metric (or one named in ``shared``) is read from the answering worker only. ``lines`` caches
    each series' exposition lines across rebuilds: formatting them is most of a rebuild's cost."""
    contributors, pages, archived = yield from _contributions(registry, sources, archive, shared)
    by_family: dict[str, list[tuple[str, ...]]] = {}
    for n, (name, labels) in enumerate(contributors):
        if n % _STEP == _STEP - 1:
            yield
        by_family.setdefault(name, []).append(labels)
    families: list[tuple[MetricSpec, list[Merged]]] = []
    # Summed series by how many sources they have: (series, width, first indices), in layout order.
    groups: dict[int, list[tuple[Merged, int, list[int]]]] = {}
    maxima: list[tuple[Merged, list[int]]] = []
    for family in registry.families():
        spec = family.spec
        merged = []
        for n, labels in enumerate(sorted(by_family.get(spec.name, ()))):
            if n % _STEP == _STEP - 1:
                yield
            key = (spec.name, labels)
            found = lines.get(key)
            if found is None:
                found = lines[key] = family.lines_for(labels)
            series = Merged(found, Slot(0, 0), labels)
            merged.append(series)
            firsts = contributors[key]
            if spec.aggregation is Aggregation.MAX:
                maxima.append((series, firsts))
            else:
                groups.setdefault(len(firsts), []).append((series, spec.width, firsts))
        families.append((spec, merged))

    position = 0
    sums: list[list[Gather]] = []
    for count in sorted(groups):
        ranks: list[list[int]] = [[] for _ in range(count)]
        for n, (series, width, firsts) in enumerate(groups[count]):
            if n % _STEP == _STEP - 1:
                yield
            series.slot = Slot(0, position)
            position += width
            for rank, first in zip(ranks, firsts, strict=True):
                rank.extend(range(first, first + width))
            if len(ranks[0]) >= _PIECE:
                sums.append([_gather(rank) for rank in ranks])
                ranks = [[] for _ in range(count)]
        if ranks[0]:
            sums.append([_gather(rank) for rank in ranks])
    for offset, (series, _) in enumerate(maxima, start=position):
        series.slot = Slot(0, offset)
    return MergePlan(signature, families, pages, archived, sums, [firsts for _, firsts in maxima])
