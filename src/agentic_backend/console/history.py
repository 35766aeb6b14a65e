"""The embedded default's metric history: what the console's charts read when there is no Prometheus.

Every ``INTERVAL`` seconds one worker of each service run (the one holding worker slot 0) takes the merged
snapshot of every worker and stores, for each selector of the console's panels, the sums the panel
aggregates (``sum by (endpoint) (http_requests_total)``, the cumulative buckets of a histogram by ``le``):
a few hundred numbers, zlib-compressed JSON, one row per sample in the service's own database. Every worker
reads the same rows, so every worker and every reload draws the same history. Rows older than
``RETENTION`` are deleted as new ones come.

Each run is an ``instance`` of its own (a restart starts new counters); the evaluator (monitoring/promql.py)
takes rates per run and sums the runs, as Prometheus does per scrape target.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from agentic_backend.console.models import MetricHistory
from agentic_backend.core.db import Database
from agentic_backend.core.tasks import cancel
from agentic_backend.metricstore.families import MetricType, format_float
from agentic_backend.metricstore.registry import FamilySnapshot, Snapshot
from agentic_backend.monitoring.promql import Leaf, Series, parse

logger = logging.getLogger(__name__)

INTERVAL = 15  # default seconds between samples (Prometheus's usual scrape interval); divides every step
RETENTION = 25 * 3600  # the 24 h range and a rate window before it
_CHUNK = 500  # times per IN (...) of a read


def leaves_of(exprs: Iterable[str]) -> tuple[Leaf, ...]:
    return tuple(dict.fromkeys(leaf for expr in exprs for leaf in parse(expr).leaves))


def _raw_samples(family: FamilySnapshot, suffix: str) -> Iterable[tuple[dict[str, str], float]]:
    """The family's series as exposition samples: name suffix '' for a counter or gauge; ``_bucket``
    (cumulative, with ``le``), ``_count`` and ``_sum`` for a histogram."""
    names = family.spec.labelnames
    edges = [format_float(b) for b in family.spec.buckets] + ["+Inf"]
    for sample in family.series:
        labels = dict(zip(names, sample.labels, strict=True))
        values = family.values(sample)
        if family.spec.type is not MetricType.HISTOGRAM:
            yield labels, values[0]
        elif suffix == "_sum":
            yield labels, values[-1]
        elif suffix == "_count":
            yield labels, math.fsum(values[:-1])
        else:
            running = 0.0
            for edge, count in zip(edges, values[:-1], strict=True):
                running += count
                yield {**labels, "le": edge}, running


def measure(snapshot: Snapshot, leaves: Sequence[Leaf]) -> dict[str, list[list[str | float]]]:
    """Each leaf's sums over the snapshot: key -> [[group label values..., value], ...]."""
    families = {f.spec.name: f for f in snapshot}
    out: dict[str, list[list[str | float]]] = {}
    for leaf in leaves:
        family, suffix = families.get(leaf.name), ""
        for candidate in ("_bucket", "_count", "_sum"):
            if family is None and leaf.name.endswith(candidate):
                family, suffix = families.get(leaf.name[: -len(candidate)]), candidate
        if family is None:
            continue
        groups: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for labels, value in _raw_samples(family, suffix):
            if all(m.matches(labels.get(m.name, "")) for m in leaf.matchers):
                groups[tuple(labels.get(name, "") for name in leaf.group)].append(value)
        combine: Callable[[list[float]], float] = max if leaf.op == "max" else math.fsum
        out[leaf.key] = [[*key, combine(values)] for key, values in sorted(groups.items())]
    return out


def encode(values: dict[str, list[list[str | float]]]) -> bytes:
    return zlib.compress(json.dumps(values, separators=(",", ":")).encode(), 6)


def decode(data: bytes) -> dict[str, list[list[str | float]]]:
    decoded: dict[str, list[list[str | float]]] = json.loads(zlib.decompress(data))
    return decoded


class Loaded:
    """Samples read from the history (plus, optionally, a live one), as the evaluator's ``Source``."""

    def __init__(self, leaves: Sequence[Leaf]) -> None:
        self._by_leaf: dict[str, dict[tuple[str, tuple[str, ...]], Series]] = defaultdict(dict)
        self._leaves = {leaf.key: leaf for leaf in leaves}
        self.starts: dict[str, float] = {}
        self.times: set[float] = set()  # the sample times added

    def add(self, instance: str, at: float, values: dict[str, list[list[str | float]]]) -> None:
        start = self.starts.setdefault(instance, at)
        self.times.add(at)
        for key, rows in values.items():
            leaf = self._leaves.get(key)
            if leaf is None:
                continue
            for row in rows:
                group = tuple(str(v) for v in row[:-1])
                one = self._by_leaf[key].get((instance, group))
                if one is None:
                    pairs = [p for p in zip(leaf.group, group, strict=True) if p[0] != "instance"]
                    labels = tuple(sorted((*pairs, ("instance", instance))))
                    one = self._by_leaf[key][(instance, group)] = Series(labels, start)
                if one.times and one.times[-1] >= at:  # out of order: keep times sorted
                    index = bisect.bisect_left(one.times, at)
                    one.times.insert(index, at)
                    one.values.insert(index, float(row[-1]))
                else:
                    one.times.append(at)
                    one.values.append(float(row[-1]))

    def series(self, leaf: Leaf) -> list[Series]:
        return list(self._by_leaf.get(leaf.key, {}).values())


class History:
    """Writes samples (the sampler) and reads them back (the console's overview)."""

    def __init__(
        self, database: Database, leaves: Sequence[Leaf], instance: str, interval: int = INTERVAL
    ) -> None:
        self._db = database
        self.leaves = tuple(leaves)
        self.instance = instance
        self.interval = interval
        self.cache: dict[str, object] = {}  # the console's computed grids, by range (console/overview.py)

    async def write(self, at: int, snapshot: Snapshot) -> int:
        """Store one sample; its size in bytes. A sample already there for ``at`` is kept."""
        data = encode(measure(snapshot, self.leaves))
        dialect = postgresql if self._db.url.startswith("postgresql") else sqlite
        statement = (
            dialect.insert(MetricHistory)
            .values(at=at, instance=self.instance, data=data)
            .on_conflict_do_nothing()
        )
        async with self._db.session() as session:
            await session.execute(statement)
            await session.execute(delete(MetricHistory).where(MetricHistory.at < at - RETENTION))
            await session.commit()
        return len(data)

    async def load(self, times: Iterable[float]) -> Loaded:
        """The samples at ``times`` (each rounded down to the interval), and each run's first sample: only
        the rows the points need, not the 5,760 of a day."""
        wanted = sorted({int(t) // self.interval * self.interval for t in times})
        loaded = Loaded(self.leaves)
        if not wanted:
            return loaded
        async with self._db.session() as session:
            starts = await session.execute(
                select(MetricHistory.instance, func.min(MetricHistory.at))
                .where(MetricHistory.at <= wanted[-1])
                .group_by(MetricHistory.instance)
            )
            loaded.starts.update({instance: float(at) for instance, at in starts})
            for i in range(0, len(wanted), _CHUNK):
                rows = await session.execute(
                    select(MetricHistory.instance, MetricHistory.at, MetricHistory.data).where(
                        MetricHistory.at.in_(wanted[i : i + _CHUNK])
                    )
                )
                for instance, at, data in rows:
                    loaded.add(instance, float(at), decode(data))
        return loaded

    async def size(self) -> tuple[int, int]:
        """Rows and bytes held."""
        async with self._db.session() as session:
            count, total = (
                await session.execute(
                    select(func.count(), func.coalesce(func.sum(func.length(MetricHistory.data)), 0))
                )
            ).one()
        return int(count), int(total)


class Sampler:
    """The task that writes a sample every ``history.interval`` seconds, on aligned times."""

    def __init__(self, history: History, snapshot: Callable[[], Awaitable[Snapshot]]) -> None:
        self._history = history
        self._snapshot = snapshot
        self._task: asyncio.Task[None] | None = None
        self.last_bytes = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metric-history")

    async def _run(self) -> None:
        while True:
            every = self._history.interval
            at = int(time.time()) // every * every
            try:
                snapshot = await self._snapshot()
                self.last_bytes = await self._history.write(at, snapshot)
            except Exception:  # the database may be down: the console shows a gap, the service goes on
                logger.warning("metric history: sample at %d not stored", at, exc_info=True)
            await asyncio.sleep(max(0.0, at + every - time.time() + 0.05))

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
