"""Where metric values live: fixed-size pages of float slots.

A series owns a few consecutive slots of one page (one for a counter or gauge; the buckets plus the sum for
a histogram) and updates them with item assignment: no lock, no object per update beyond the float.
prometheus_client takes a lock and walks two objects per update; ``bench/http_overhead.py`` shows that
difference in the middleware's hot path, which is why this store is written by hand.

Two kinds of page:

* ``LocalPages``: Python lists, for a single process. ``page[i] += x`` on a list runs as the interpreter's
  specialised list instructions; on a ``memoryview`` it goes through the buffer protocol and packs and
  unpacks a C double: about 430 more machine instructions per update under callgrind, and the middleware
  makes five per request (``bench/http_overhead.py --instructions`` counts the whole request).
* ``MmapPages``: float64 files under a folder, mapped into memory through a ``memoryview``, for
  ``serve --workers N``. Each worker writes its own pages and appends every series it allocates to a
  journal (one JSON line each), so any worker can read all the others' values at scrape time without asking
  them. Pages never move once created, so a reader only ever sees a slot as zero or as a value some worker
  wrote (aligned 8-byte stores are atomic on the platforms we run on).

Updates come from the event-loop thread. CPython does not switch threads inside ``page[i] += x`` (the
subscript, the addition and the store are instructions without an eval-breaker check), so an update from a
worker thread cannot be lost either; the custom-metrics store takes a real lock anyway because it is shared
between processes.
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, overload

PAGE_SLOTS = 4096
_SLOT_BYTES = 8


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a series' values live: ``page`` number and first ``offset`` in it."""

    page: int
    offset: int


class FloatView(Protocol):
    """One page: a list of floats, or a mapped file seen as float64 slots."""

    def __getitem__(self, index: int, /) -> float: ...
    def __setitem__(self, index: int, value: float, /) -> None: ...


class MappedView(FloatView, Protocol):
    """A ``memoryview`` of a mapped file cast to float64 ('d'), typed as what it holds."""

    @overload
    def __getitem__(self, index: int, /) -> float: ...
    @overload
    def __getitem__(self, index: slice, /) -> MappedView: ...
    def tolist(self) -> list[float]: ...
    def release(self) -> None: ...

    @property
    def obj(self) -> object: ...


class PageStore(Protocol):
    def allocate(self, width: int) -> Slot: ...

    def view(self, page: int) -> FloatView: ...

    def copy(self) -> list[list[float]]: ...


class LocalPages:
    """Pages in process memory: lists of floats."""

    def __init__(self) -> None:
        self._pages: list[list[float]] = []
        self._used = PAGE_SLOTS

    def allocate(self, width: int) -> Slot:
        if width > PAGE_SLOTS:
            raise ValueError(f"a series cannot use more than {PAGE_SLOTS} slots")
        if self._used + width > PAGE_SLOTS:
            self._pages.append([0.0] * PAGE_SLOTS)
            self._used = 0
        slot = Slot(len(self._pages) - 1, self._used)
        self._used += width
        return slot

    def view(self, page: int) -> list[float]:
        return self._pages[page]

    def copy(self) -> list[list[float]]:
        return [page.copy() for page in self._pages]


logger = logging.getLogger(__name__)
# Filesystems that cannot reserve blocks ahead: their pages are sparse, as ftruncate leaves them.
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})


def _map_page(path: Path, *, create: bool) -> MappedView:
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create:
            made = os.fstat(fd).st_size == 0  # not a page another process made (custom metrics adopt them)
            try:
                os.ftruncate(fd, PAGE_SLOTS * _SLOT_BYTES)
                _reserve(fd)
            except OSError:
                if made:
                    os.unlink(path)  # nobody maps it: no journal line names it yet
                raise
        mapped = mmap.mmap(fd, PAGE_SLOTS * _SLOT_BYTES)
    finally:
        os.close(fd)
    return cast(MappedView, memoryview(mapped).cast("d"))


def _reserve(fd: int) -> None:
    """Take the page's blocks now: on a full disk (or tmpfs) a sparse page fails at its first write through
    the mapping, and that failure is a SIGBUS that kills the worker; this is an OSError to handle instead."""
    if not hasattr(os, "posix_fallocate"):  # macOS
        return
    try:
        os.posix_fallocate(fd, 0, PAGE_SLOTS * _SLOT_BYTES)
    except OSError as exc:
        if exc.errno not in _NO_FALLOCATE:
            raise


class MmapPages:
    """Pages in files named ``<prefix>.<n>.page`` under ``folder``, shared through the page cache.

    The owner allocates; other processes open the same prefix read-only in effect (they never write) or,
    for the shared custom-metrics store, write under a file lock.
    """

    def __init__(self, folder: Path, prefix: str) -> None:
        self._folder = folder
        self._prefix = prefix
        self._views: list[MappedView] = []
        self._used = PAGE_SLOTS

    def _path(self, page: int) -> Path:
        return self._folder / f"{self._prefix}.{page}.page"

    def allocate(self, width: int) -> Slot:
        if self._used + width > PAGE_SLOTS:
            self._views.append(_map_page(self._path(len(self._views)), create=True))
            self._used = 0
        slot = Slot(len(self._views) - 1, self._used)
        self._used += width
        return slot

    def adopt(self, slot: Slot, width: int) -> None:
        """Take into account a slot that another process allocated in these pages."""
        while slot.page >= len(self._views):
            self._views.append(_map_page(self._path(len(self._views)), create=True))
            self._used = 0
        if slot.page == len(self._views) - 1:
            self._used = max(self._used, slot.offset + width)

    def view(self, page: int) -> MappedView:
        while page >= len(self._views):
            self._views.append(_map_page(self._path(len(self._views)), create=False))
        return self._views[page]

    def copy(self) -> list[list[float]]:
        return [v.tolist() for v in self._views]

    def close(self) -> None:
        for view in self._views:
            obj = view.obj
            view.release()
            if isinstance(obj, mmap.mmap):
                obj.close()
        self._views.clear()


class Journal:
    """An append-only file of JSON records: which series sit in which slots (and, for custom metrics,
    which families exist). Readers keep their offset and read only what is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._torn = False  # the last append wrote only part of its line

    def append(self, record: dict[str, object]) -> None:
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        # A write the disk cut short left a line without its end: end it first, so that only that line is
        # lost (readers skip it) and not the next one glued to it.
        data = (b"\n" if self._torn else b"") + line.encode()
        # One write() of an O_APPEND file: readers see the whole line or none of it.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, data)  # raising, it wrote nothing: the state stays as it was
        finally:
            os.close(fd)
        if written != len(data):
            self._torn = True
            raise OSError(errno.ENOSPC, f"{self.path.name}: the disk is full (a line cut short)")
        self._torn = False

    def read_new_lines(self) -> list[bytes]:
        """The complete lines appended since the last read, unparsed."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += end
        return data[:end].splitlines()

    def read_new(self) -> Iterator[dict[str, object]]:
        for line in self.read_new_lines():
            record = parse_line(line)
            if record is not None:
                yield record


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A journal line's record; None, logged, for a line a full disk cut short (see ``Journal.append``)."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        return record
    if line.strip():
        logger.warning("skipped a journal line that is not a whole record (%d bytes)", len(line))
    return None


def stat_fields(path: str) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` (or ``/proc/self/task/<id>/stat``) file after the command name,
    which may hold spaces and parentheses: ``[0]`` is the state letter, ``[19]`` the start time. Raises
    what reading the file raises (FileNotFoundError once the process or thread is gone)."""
    stat = Path(path).read_text()
    return stat[stat.rfind(")") + 2 :].split()


def process_identity(pid: int) -> str | None:
    """``<pid>-<start time>`` of a running process, or None if it is gone. The start time tells a restarted
    worker from an earlier process that had the same pid."""
    try:
        fields = stat_fields(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] in ("Z", "X"):  # a zombie has exited: its counters are final
        return None
    return f"{pid}-{fields[19]}"
