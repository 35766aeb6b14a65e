"""One scrape for ``serve --workers N``: every worker's values, summed, with dead workers kept.

Each worker process stores its built-in metrics in its own pages under the shared folder
(``<worker>.<n>.page``) and journals where each series sits (``<worker>.journal``). The worker that answers
a scrape reads all of them and combines each series by its spec's ``Aggregation``.

A worker that exits (or is restarted by the supervisor) leaves files behind. The next scrape folds its
counters and histograms into ``archive.json`` (one entry per series, however many workers have died) and
deletes its files, so the sums never go backwards and the folder does not grow with restarts; its gauges
are dropped, since what it was doing ended with it.

Scrapes run concurrently (two Prometheus servers of an HA pair, each answered by another worker), so a
scrape must see a dead worker either in its files or in the archive, never both and never neither.
Archiving (fold into the archive, delete the files) happens under an exclusive lock on ``.archive.lock``;
reading (list the workers, read their pages, read the archive) under a shared one. A worker that dies
while a scrape reads is simply read as it was: its pages hold its final values until the archive has them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from agentic_backend.metricstore.families import Aggregation, MetricSpec
from agentic_backend.metricstore.merge import MergePlan, build_plan
from agentic_backend.metricstore.registry import Registry, Snapshot
from agentic_backend.metricstore.storage import Journal, MmapPages, Slot, parse_line, process_identity
from agentic_backend.metricstore.timeslice import TimeSlice

ARCHIVE = "archive.json"
WORKER_PREFIX = "w-"  # worker files are w-<pid>-<start time>.*; custom.* is the shared custom store
_JOURNAL_SUFFIX = ".journal"
_ARCHIVE_LOCK = ".archive.lock"
_STEP = 200  # journal lines taken in between two yields of a scrape's merge (see merge._STEP)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """A lock between processes (and threads: each acquisition opens its own descriptor); exclusive
    unless ``shared``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _WorkerFiles:
    """What this process has read so far of one worker's journal, and that worker's mapped pages."""

    def __init__(self, folder: Path, worker: str) -> None:
        self.journal = Journal(folder / f"{worker}{_JOURNAL_SUFFIX}")
        self.pages = MmapPages(folder, worker)
        self.entries: list[tuple[str, tuple[str, ...], Slot]] = []
        self._pending: list[bytes] = []  # journal lines read but not yet taken in

    def refresh(self, limit: int | None = None) -> bool:
        """Take in up to ``limit`` of the series the worker journaled since the last look (all if None);
        whether any are still left to take in."""
        self._pending.extend(self.journal.read_new_lines())
        count = len(self._pending) if limit is None else min(limit, len(self._pending))
        for line in self._pending[:count]:
            record = parse_line(line)
            if record is None:
                continue
            self.entries.append(
                (str(record["m"]), tuple(record["l"]), Slot(int(record["p"]), int(record["o"])))
            )
        del self._pending[:count]
        return bool(self._pending)


def worker_journal(folder: Path, worker: str) -> Callable[[MetricSpec, tuple[str, ...], Slot], None]:
    """The ``on_allocate`` hook of a worker's registry: journal each new series."""
    journal = Journal(folder / f"{worker}{_JOURNAL_SUFFIX}")

    def record(spec: MetricSpec, labels: tuple[str, ...], slot: Slot) -> None:
        journal.append({"m": spec.name, "l": list(labels), "p": slot.page, "o": slot.offset})

    return record


class WorkerSet:
    """Reads and combines the built-in metrics of every worker sharing ``folder``."""

    def __init__(
        self,
        folder: Path,
        registry: Registry,
        own: str,
        on_exits: Callable[[int], None] | None = None,
    ) -> None:
        self.folder = folder
        # Told the archive's count of workers that exited, before each read (a SHARED counter).
        self._on_exits = on_exits
        self.own = own
        self._registry = registry
        self._seen: dict[str, _WorkerFiles] = {}
        # Metrics that read one shared source in this configuration (cache_size_bytes over Redis): every
        # worker holds the same value, so only the answering worker's fresh one counts.
        self.shared: set[str] = set()
        self._plan: MergePlan | None = None
        self._lines: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}  # see merge.build_plan
        self._archive_cache: tuple[object, dict[str, Any]] | None = None

    def _workers(self) -> list[str]:
        return sorted(
            p.name[: -len(_JOURNAL_SUFFIX)] for p in self.folder.glob(f"{WORKER_PREFIX}*{_JOURNAL_SUFFIX}")
        )

    def collect(self) -> Snapshot:
        """Every worker's values combined, at once (the summary and health checks)."""
        steps = self.collect_steps()
        while (snapshot := _advance(steps)) is None:
            pass
        return snapshot

    async def collect_async(self) -> Snapshot:
        """The same, yielding to the event loop between steps: other requests run during a merge."""
        steps = self.collect_steps()
        pause = TimeSlice()
        while True:
            snapshot = _advance(steps)
            if snapshot is not None:
                return snapshot
            await pause()  # other requests run between two slices of steps

    def collect_steps(self) -> Generator[None, None, Snapshot]:
        """The merge, one step per worker (see ``merge``); its return value is the snapshot."""
        for worker in self._workers():
            if not _alive(worker):
                self._archive(worker)
        yield
        with file_lock(self.folder / _ARCHIVE_LOCK, shared=True):
            archive_key, archive = self._archive_data()
            if self._on_exits is not None:
                self._on_exits(int(archive.get("exits", 0)))
            absorbed = set(archive["absorbed"])
            listed = self._workers()
            sources: list[tuple[str, _WorkerFiles]] = []
            for worker in listed:
                if worker in absorbed:  # in the archive already, its files not yet deleted
                    continue
                files = self._seen.get(worker)
                if files is None:
                    files = self._seen[worker] = _WorkerFiles(self.folder, worker)
                while files.refresh(limit=_STEP):  # a worker's first read: thousands of journal lines
                    yield
                sources.append((worker, files))
            signature = (tuple((w, len(f.entries)) for w, f in sources), archive_key, frozenset(self.shared))
            plan = self._plan
            if plan is None or plan.signature != signature:
                plan = self._plan = yield from build_plan(
                    self._registry,
                    [(w, w == self.own, f.entries) for w, f in sources],
                    archive["series"],
                    self.shared,
                    signature,
                    self._lines,
                )
            sources_values: list[float] = []
            for worker, files in sources:
                for page in range(plan.pages.get(worker, 0)):  # one page copy (4,096 values) per step
                    sources_values += files.pages.view(page).tolist()
                    yield
            values = yield from plan.merge(sources_values)
        for gone in self._seen.keys() - set(listed):  # archived by another worker's scrape: unmap its pages
            self._seen.pop(gone).pages.close()
        return plan.snapshot(values)

    def _archive_data(self) -> tuple[object, dict[str, Any]]:
        """The archive and a key that changes whenever it does (it is replaced, never edited in place)."""
        try:
            stat = (self.folder / ARCHIVE).stat()
        except FileNotFoundError:
            return None, {"series": [], "absorbed": [], "exits": 0}
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._archive_cache is None or self._archive_cache[0] != key:
            self._archive_cache = (key, self._read_archive())
        return self._archive_cache

    def _read_archive(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.folder / ARCHIVE).read_text())
        except FileNotFoundError:
            return {"series": [], "absorbed": [], "exits": 0}
        return data

    def _archive(self, worker: str) -> None:
        with file_lock(self.folder / _ARCHIVE_LOCK):
            files = self._seen.pop(worker, None) or _WorkerFiles(self.folder, worker)
            if not files.journal.path.exists():
                # Another scrape archived it between our listing and this lock (files are deleted only under
                # it): folding in what we mapped before would count it twice.
                files.pages.close()
                return
            archive = self._read_archive()
            if worker not in archive["absorbed"]:
                files.refresh()
                totals: dict[tuple[str, tuple[str, ...]], list[float]] = {
                    (name, tuple(labels)): values for name, labels, values in archive["series"]
                }
                for name, labels, slot in files.entries:
                    spec = self._registry.spec(name)
                    if spec is None or spec.aggregation is not Aggregation.SUM:
                        continue
                    page = files.pages.view(slot.page)
                    _combine(totals, spec, labels, page[slot.offset : slot.offset + spec.width].tolist())
                archive = {
                    "series": [[name, list(labels), values] for (name, labels), values in totals.items()],
                    "absorbed": [*archive["absorbed"], worker],
                    "exits": int(archive.get("exits", 0)) + 1,
                }
                _write_atomically(self.folder / ARCHIVE, archive)
            files.pages.close()
            for path in self.folder.glob(f"{worker}.*"):
                path.unlink(missing_ok=True)
            # Forget absorbed workers whose files are gone: the list stays as short as the deletions pending.
            remaining = {
                p.name[: -len(_JOURNAL_SUFFIX)]
                for p in self.folder.glob(f"{WORKER_PREFIX}*{_JOURNAL_SUFFIX}")
            }
            kept = [w for w in archive["absorbed"] if w in remaining]
            if kept != archive["absorbed"]:
                archive["absorbed"] = kept
                _write_atomically(self.folder / ARCHIVE, archive)

    def close(self) -> None:
        for files in self._seen.values():
            files.pages.close()
        self._seen.clear()


def _advance(steps: Generator[None, None, Snapshot]) -> Snapshot | None:
    """One step of a merge: its snapshot once it is done, else None."""
    try:
        next(steps)
    except StopIteration as done:
        result: Snapshot = done.value
        return result
    return None


def _combine(
    totals: dict[tuple[str, tuple[str, ...]], list[float]],
    spec: MetricSpec,
    labels: tuple[str, ...],
    values: list[float],
) -> None:
    key = (spec.name, labels)
    current = totals.get(key)
    if current is None:
        totals[key] = list(values)
    elif spec.aggregation is Aggregation.MAX:
        totals[key] = [max(a, b) for a, b in zip(current, values, strict=True)]
    else:
        totals[key] = [a + b for a, b in zip(current, values, strict=True)]


def worker_name(pid: int) -> str | None:
    identity = process_identity(pid)
    return None if identity is None else WORKER_PREFIX + identity


def _alive(worker: str) -> bool:
    pid, _, _ = worker.removeprefix(WORKER_PREFIX).partition("-")
    return pid.isdigit() and worker_name(int(pid)) == worker


def _write_atomically(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)
