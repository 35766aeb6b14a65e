"""``Telemetry``: the metrics of one process, built from settings, and the one snapshot every reader uses.

``/metrics``, ``/summary`` and ``/health`` all read ``Telemetry.snapshot_async()``: there is no second
bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from agentic_backend.core.config import Settings
from agentic_backend.metricstore.exemplars import Exemplars
from agentic_backend.metricstore.multiprocess import WorkerSet, worker_journal, worker_name
from agentic_backend.metricstore.registry import SERIES_OVERFLOW, Registry, Snapshot
from agentic_backend.metricstore.storage import LocalPages, MmapPages, PageStore
from agentic_backend.monitoring.catalogue import CATALOGUE, GENAI_CATALOGUE, BuiltinMetrics
from agentic_backend.monitoring.custom import CustomMetrics
from agentic_backend.monitoring.waits import CAUSES, EventLoopMonitor, WorkerSlot

logger = logging.getLogger(__name__)


class Telemetry:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        folder = settings.metrics_multiprocess_dir
        store: PageStore
        self._pages: MmapPages | None = None
        self.workers: WorkerSet | None = None
        worker = ""
        if folder is None:
            store = LocalPages()
            on_allocate = None
        else:
            folder.mkdir(parents=True, exist_ok=True)
            name = worker_name(os.getpid())
            assert name is not None  # this process is running
            worker = name
            store = self._pages = MmapPages(folder, worker)
            on_allocate = worker_journal(folder, worker)
        self.registry = Registry(
            store, max_series_per_metric=settings.metrics_max_series_per_metric, on_allocate=on_allocate
        )
        self.metrics = BuiltinMetrics.register(self.registry, genai=settings.genai_metrics)
        # The GenAI names stay reserved when they are off: a custom metric cannot take them.
        self.custom = CustomMetrics(settings, (*CATALOGUE, *GENAI_CATALOGUE, SERIES_OVERFLOW), folder)
        if folder is not None:
            exits = self.metrics.worker_exits.labels()
            self.workers = WorkerSet(folder, self.registry, worker, lambda n: exits.set(float(n)))
        self.clock = clock
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        self.started_at = clock()
        self.multiprocess = folder is not None
        self.exemplars: Exemplars | None = None  # set when tracing is on (core/tracing.py)
        self.worker_slot = WorkerSlot(folder)
        worker_label = str(self.worker_slot.number)
        lag = self.metrics.event_loop_lag.labels(worker_label)
        late = {cause: self.metrics.event_loop_late.labels(worker_label, cause) for cause in CAUSES}

        def late_by(cause: str, seconds: float) -> None:
            late[cause].observe(seconds)

        active, slot = self.metrics.active_requests.labels().location()  # this worker's requests in flight
        self.loop_monitor = EventLoopMonitor(
            lag.observe,
            late_by=late_by,
            busy=lambda: active[slot] > 0,
            trace_after=settings.loop_hold_trace_ms / 1000,
        )
        waits = {kind: self.metrics.database_wait.labels(kind) for kind in ("pool", "lock")}

        def database_wait(kind: str, seconds: float) -> None:
            waits[kind].observe(seconds)

        self.database_wait = database_wait

    def share_between_workers(self, name: str) -> None:
        """Read ``name`` from the answering worker only: in this configuration it measures one shared
        source (a gauge every worker would report alike), which summing would count N times."""
        if self.workers is not None:
            self.workers.shared.add(name)

    def add_refresher(self, refresher: Callable[[], Awaitable[None]]) -> None:
        """Run ``refresher`` before each scrape or summary (e.g. to count sessions in the database)."""
        self._refreshers.append(refresher)

    async def refresh(self) -> None:
        for refresher in self._refreshers:
            try:
                await refresher()
            except Exception:  # a scrape must not fail because one source is down; /health says so
                logger.warning("metrics refresher %s failed", getattr(refresher, "__qualname__", refresher))

    def snapshot(self) -> Snapshot:
        """Every worker's values combined at once: for tests and tools. A coroutine must use
        ``snapshot_async``: merging N workers at once held the loop 10-70 ms (the summary did, issue 19)."""
        if self.workers is not None and _loop_running():
            raise RuntimeError(
                "Telemetry.snapshot() in a coroutine holds the event loop: await snapshot_async()"
            )
        builtin = self.workers.collect() if self.workers is not None else self.registry.snapshot()
        return builtin + self.custom.snapshot()

    async def snapshot_async(self) -> Snapshot:
        """The same snapshot, merging workers' values with yields to the event loop between workers."""
        builtin = await self.workers.collect_async() if self.workers is not None else self.registry.snapshot()
        return builtin + self.custom.snapshot()

    def uptime_seconds(self) -> float:
        return max(0.0, self.clock() - self.started_at)

    def close(self) -> None:
        self.loop_monitor.stop()
        self.worker_slot.release()
        if self.workers is not None:
            self.workers.close()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
