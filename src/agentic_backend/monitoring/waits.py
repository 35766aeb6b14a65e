"""Waiting made visible: the event loop's lag, and each worker's slot number for its label.

A request of an asyncio service can be slow without using any CPU: it waits for a loop that another
callback holds (a long computation, a call that blocks), or for the database. ``EventLoopMonitor``
measures the first the way Node.js's ``monitorEventLoopDelay`` does: a timer due every 10 ms records how
late it ran. A loop held for H ms makes one timer that much late, so the histogram's highest bucket is the
longest hold, within 10 ms. A wake-up costs 80-100 µs of CPU on this project's VM (an empty uvloop timer
alone), so a timer every 10 ms on an idle worker took 1.3 % of a core, and on 4 workers sharing a core at
150 requests/s it added 0.6 ms of CPU to every request and made p50 1.7 times the 1-worker figure
(``bench/workers.py``). So the monitor rests while its worker has nothing to do: when a timer finds no
request in flight and the loop's thread ran less than 5 % of the time since the last timer, the next is
due in 50 ms, and the first request to arrive (the HTTP middleware calls ``wake``) or a resting timer
that finds the thread busy brings back the 10-ms pace. A request's holds are measured as before; a hold
by background work while the worker serves no request shows from its 50th ms on.

A late timer does not say whose fault it is. For each timer at least ``LATE`` (5 ms) late, the monitor also
reads the loop thread's scheduler statistics (``/proc/thread-self/schedstat``: the time it ran and the time
it waited in the run queue, one ``pread`` of 1.3 µs) and splits the lateness by cause: ``busy``, the
worker's own code ran (a held loop: a long callback, a call that blocks); ``cpu_wait``, the worker was ready
but waited for a CPU (other workers or processes on its cores, a container's CPU quota); ``other``, it did
neither (the machine itself: a virtual machine whose host ran something else). The operator's answer
differs: fix the code, give the workers CPUs, or look at the host.
The database's waits are measured where they happen (core/db.py, core/sqlite_inline.py,
billing/ratelimit.py) and recorded in ``database_wait_seconds``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path

SLOT_PREFIX = ".worker-slot-"


LATE = 0.005  # seconds: a timer this late or later has its lateness split by cause
REST = 0.05  # seconds between timers while the worker has nothing to do
QUIET = 0.05  # the share of the time since the last timer that the thread may have run, and rest
CAUSES = ("busy", "cpu_wait", "other")


def split_lateness(late: float, ran: float, waited: float) -> tuple[float, float, float]:
    """``late`` seconds of a timer's lateness as (busy, cpu_wait, other), given how long the loop's thread
    ran and waited for a CPU since the previous timer: waiting first (it excludes running), then running,
    and what neither covers is other."""
    cpu_wait = min(late, max(0.0, waited))
    busy = min(late - cpu_wait, max(0.0, ran))
    return busy, cpu_wait, late - cpu_wait - busy


class SchedStat:
    """The calling thread's time run and time waited for a CPU, in seconds, from the kernel's schedstat
    (Linux); not ``available`` where it cannot be read."""

    def __init__(self) -> None:
        self._fd: int | None = None
        try:
            self._fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
            self.read()
        except (OSError, ValueError, IndexError):
            self.close()

    @property
    def available(self) -> bool:
        return self._fd is not None

    def read(self) -> tuple[float, float]:
        assert self._fd is not None
        ran, waited = os.pread(self._fd, 128, 0).split()[:2]
        return int(ran) / 1e9, int(waited) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EventLoopMonitor:
    """Records, every ``interval`` seconds, how late the running loop ran a timer that was due; with
    ``late_by``, also the lateness of timers at least ``LATE`` late, by cause (see ``CAUSES``). With
    ``busy`` (whether the worker has a request in flight), it rests while the worker is idle: timers every
    ``REST`` seconds until ``wake`` or a busy thread."""

    def __init__(
        self,
        observe: Callable[[float], None],
        interval: float = 0.01,
        *,
        late_by: Callable[[str, float], None] | None = None,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self._observe = observe
        self._late_by = late_by
        self._busy = busy
        self._interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._stat: SchedStat | None = None
        self._ran = self._waited = 0.0  # the thread's totals at the previous timer
        self._last = 0.0  # when the previous timer ran (the loop's time)
        self.resting = False  # read on every request by the HTTP middleware: a plain attribute

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._late_by is not None or self._busy is not None:  # on the loop's thread: that thread's
            stat = SchedStat()
            if stat.available:
                self._stat = stat
                self._ran, self._waited = stat.read()
        self._last = self._loop.time()
        self._schedule(self._last, self._interval)

    def _schedule(self, now: float, interval: float) -> None:
        assert self._loop is not None
        self._due = now + interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        late = max(0.0, now - self._due)
        self._observe(late)
        ran = 0.0
        if self._stat is not None:
            totals = self._stat.read()
            ran, waited = totals[0] - self._ran, totals[1] - self._waited
            if late >= LATE and self._late_by is not None:
                parts = split_lateness(late, ran, waited)
                for cause, seconds in zip(CAUSES, parts, strict=True):
                    if seconds > 0:
                        self._late_by(cause, seconds)
            self._ran, self._waited = totals
        if self._busy is not None:
            self.resting = not self._busy() and ran < QUIET * (now - self._last)
        self._last = now
        self._schedule(now, REST if self.resting else self._interval)

    def wake(self) -> None:
        """Back to a timer every ``interval``: the worker has work (a request arrived)."""
        if not self.resting or self._loop is None or self._handle is None:
            return
        self.resting = False
        self._handle.cancel()
        now = self._loop.time()
        if self._stat is not None:  # the next timer's lateness is split by what happens from now on
            self._ran, self._waited = self._stat.read()
        self._last = now
        self._schedule(now, self._interval)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._stat is not None:
            self._stat.close()
            self._stat = None
        self.resting = False


class WorkerSlot:
    """A small number for this worker, the lowest no living worker of this run holds: a bounded label
    value (0 to N-1 under ``serve --workers N``) where a process id would grow with every restart. Held by
    a lock on a file of the run folder, which the kernel releases when the process dies, so that its
    replacement takes the same number."""

    def __init__(self, folder: Path | None) -> None:
        self.number = 0
        self._fd: int | None = None
        if folder is None:
            return
        number = 0
        while True:
            fd = os.open(folder / f"{SLOT_PREFIX}{number}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                number += 1
                continue
            self.number, self._fd = number, fd
            return

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
