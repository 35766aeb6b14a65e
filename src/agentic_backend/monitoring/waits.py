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
that finds the thread busy brings back the 10-ms pace. When the worker's last request in flight ends
before the pending timer is due (the middleware calls ``idle``), the monitor rests at once rather than at
that timer: a worker answering a request every 27 ms (150 requests/s on 4 workers) otherwise woke twice
more for each, once 10 ms after it to find it ended, once more to find the thread quiet; each wake-up of
one of 4 processes sharing a core runs from cold caches. A request's holds are measured as before: a
hold that passes the pending timer's due time leaves it overdue, and an overdue timer is not moved, so it
runs next and records the hold. A hold by background work while the worker serves no request shows from
its 50th ms on.

A late timer does not say whose fault it is. For each timer at least ``LATE`` (5 ms) late, the monitor also
reads the loop thread's scheduler statistics (``/proc/thread-self/schedstat``: the time it ran and the time
it waited in the run queue, one ``pread`` of 1.3 µs) and splits the lateness by cause: ``busy``, the
worker's own code ran (a held loop: a long callback, a call that blocks); ``cpu_wait``, the worker was ready
but waited for a CPU (other workers or processes on its cores, a container's CPU quota); ``other``, it did
neither (the machine itself: a virtual machine whose host ran something else). The operator's answer
differs: fix the code, give the workers CPUs, or look at the host.
To find the code that holds a loop, ``AGENTIC_LOOP_HOLD_TRACE_MS`` starts a ``HoldTracer``: a thread that
logs the loop thread's stack while a hold lasts (the way Go's ``GODEBUG`` traces or aiodebug's
slow-callback logger point at the culprit, where the histogram only says that it happened).
The database's waits are measured where they happen (core/db.py, core/sqlite_inline.py,
billing/ratelimit.py) and recorded in ``database_wait_seconds``.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentic_backend.metricstore.storage import stat_fields

logger = logging.getLogger(__name__)

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
    """A thread's time run and time waited for a CPU, in seconds, from the kernel's schedstat (Linux); by
    default the calling thread's. Not ``available`` where it cannot be read."""

    def __init__(self, native_id: int | None = None) -> None:
        self._fd: int | None = None
        thread = threading.get_native_id() if native_id is None else native_id
        try:
            self._fd = os.open(f"/proc/self/task/{thread}/schedstat", os.O_RDONLY)
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
        trace_after: float = 0.0,
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
        self._tracer = HoldTracer(self, trace_after) if trace_after > 0 else None

    @property
    def due(self) -> float:
        """When the pending timer is due (the loop's clock, ``time.monotonic``'s)."""
        return self._due

    @property
    def last(self) -> float:
        """When the previous timer ran."""
        return self._last

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._late_by is not None or self._busy is not None:  # on the loop's thread: that thread's
            stat = SchedStat()
            if stat.available:
                self._stat = stat
                self._ran, self._waited = stat.read()
        self._last = self._loop.time()
        self._schedule(self._last, self._interval)
        if self._tracer is not None:
            self._tracer.start()

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
        self._restart(self._loop.time(), self._interval)

    def idle(self) -> None:
        """Rest now: the worker's last request in flight has ended. Not when the pending timer is already
        due: a hold by that request (or anything else) passed its due time, and the timer must run to
        record it."""
        if self.resting or self._loop is None or self._handle is None:
            return
        now = self._loop.time()
        if now >= self._due:
            return
        self.resting = True
        self._restart(now, REST)

    def _restart(self, now: float, interval: float) -> None:
        """Replace the pending timer by one ``interval`` from ``now``; its lateness is split by what
        happens from now on."""
        assert self._handle is not None
        self._handle.cancel()
        if self._stat is not None:
            self._ran, self._waited = self._stat.read()
        self._last = now
        self._schedule(now, interval)

    def stop(self) -> None:
        if self._tracer is not None:
            self._tracer.stop()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._stat is not None:
            self._stat.close()
            self._stat = None
        self.resting = False


_STATES = {
    "R": "running or waiting for a CPU",
    "S": "sleeping in a system call (a call that blocks)",
    "D": "waiting in the kernel for I/O (a disk, a page fault on a file)",
}


def thread_state(native_id: int) -> str | None:
    """The kernel's state letter of one of this process's threads (``R``, ``S``, ``D``, ...), from
    ``/proc/self/task/<id>/stat``; None where it cannot be read."""
    try:
        return stat_fields(f"/proc/self/task/{native_id}/stat")[0]
    except (OSError, ValueError, IndexError):
        return None


class HoldTracer:
    """Logs, at WARNING, the stack of the loop's thread when the monitor's pending timer is ``after``
    seconds overdue, and again at each doubling of the hold (2x, 4x, ...), saying whether the garbage
    collector is running. A thread checks every ``after``/2 seconds; it takes the GIL to look, which
    CPython's switch interval (5 ms) grants while the loop runs Python code, so a hold by a C call that
    keeps the GIL is reported when it ends. Off by default: its wake-ups cost what the monitor's timers do
    (80-100 µs each on this project's VM), so it is for looking for a hold, not for every day."""

    def __init__(self, monitor: EventLoopMonitor, after: float) -> None:
        self._monitor = monitor
        self._after = after
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = self._loop_native = 0
        self._collecting: int | None = None  # the generation being collected, set by gc's callback
        self._reported = (0.0, 0.0)  # the timer (its due time) last reported, and the hold reported then
        self._stat: SchedStat | None = None  # the loop thread's, read from this one
        self._before = (0.0, 0.0, 0.0)  # at the last check that found no hold: time, ran, waited

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._loop_native = threading.get_native_id()
        stat = SchedStat(self._loop_native)
        self._stat = stat if stat.available else None
        self._stopped.clear()
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._watch, name="loop-hold-tracer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._stat is not None:
            self._stat.close()
            self._stat = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        self._collecting = info["generation"] if phase == "start" else None

    def _watch(self) -> None:
        while not self._stopped.wait(self._after / 2):
            self.check(time.monotonic())

    def check(self, now: float) -> str | None:
        """Log and return the report of a hold at ``now``, if there is one to report."""
        due = self._monitor.due
        if self._monitor.last >= due:  # the timer has just run and the next is not scheduled yet
            return None
        held = now - due
        if held < self._after:
            if self._stat is not None:
                self._before = (now, *self._stat.read())
            return None
        previous_due, previous_held = self._reported
        if due == previous_due and held < 2 * previous_held:
            return None
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:  # the loop's thread has ended
            return None
        self._reported = (due, held)
        stack = "".join(traceback.format_stack(frame, limit=40))
        collecting = self._collecting
        during = f" during a garbage collection of generation {collecting}" if collecting is not None else ""
        split = ""
        if self._stat is not None and self._before[0]:  # a thread waiting for a CPU holds nothing itself
            since, ran, waited = self._before
            now_ran, now_waited = self._stat.read()
            # The kernel adds a wait for a CPU when the wait ends, so it can exceed the span.
            split = (
                f" (of the last {(now - since) * 1000:.0f} ms its thread ran {(now_ran - ran) * 1000:.0f} ms"
                f" and waited for a CPU {(now_waited - waited) * 1000:.0f} ms"
                + ("; mostly the wait: not this code's hold" if now_waited - waited >= held / 2 else "")
                + ")"
            )
        # The wait for a CPU that is going on is not in the statistics yet: the thread's state tells it from
        # a call that blocks (a loop's own poll never outlasts its due timer).
        state = thread_state(self._loop_native) if self._loop_native else None
        now_in = f"{state}, {_STATES[state]}" if state in _STATES else state
        where = f"its thread is {now_in}, at" if now_in else "its thread is at"
        report = f"event loop held for {held * 1000:.0f} ms so far{during}{split}; {where}:\n{stack}"
        logger.warning("%s", report)
        return report


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
