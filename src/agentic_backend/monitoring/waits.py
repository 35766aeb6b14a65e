"""Waiting made visible: the event loop's lag, and each worker's slot number for its label.

A request of an asyncio service can be slow without using any CPU: it waits for a loop that another
callback holds (a long computation, a call that blocks), or for the database. ``EventLoopMonitor``
measures the first the way Node.js's ``monitorEventLoopDelay`` does: a timer due every 10 ms records how
late it ran. A loop held for H ms makes one timer that much late, so the histogram's highest bucket is the
longest hold, within 10 ms. It costs one wake-up per 10 ms: measured 1.3 % of a core per idle worker on
this project's VM (an empty uvloop timer alone costs 80-100 µs of CPU per wake-up there), less under load,
when the loop is awake anyway.
The database's waits are measured where they happen (core/db.py, core/sqlite_inline.py,
billing/ratelimit.py) and recorded in ``database_wait_seconds``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

SLOT_PREFIX = ".worker-slot-"


class EventLoopMonitor:
    """Records, every ``interval`` seconds, how late the running loop ran a timer that was due."""

    def __init__(self, observe: Callable[[float], None], interval: float = 0.01) -> None:
        self._observe = observe
        self._interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule(self._loop.time())

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._observe(max(0.0, now - self._due))
        self._schedule(now)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


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
