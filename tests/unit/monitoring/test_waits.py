"""The event-loop monitor and the worker slot."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agentic_backend.monitoring.waits import EventLoopMonitor, WorkerSlot


async def test_a_held_loop_makes_one_timer_that_late() -> None:
    lags: list[float] = []
    monitor = EventLoopMonitor(lags.append, interval=0.01)
    monitor.start()
    try:
        await asyncio.sleep(0.1)
        assert lags
        assert max(lags) < 0.02  # an idle loop runs its timers on time
        time.sleep(0.08)  # a blocking call holds the loop  # noqa: ASYNC251
        await asyncio.sleep(0.05)
    finally:
        monitor.stop()
    assert 0.06 <= max(lags) < 0.2
    assert sum(1 for lag in lags if lag > 0.03) == 1  # one hold, one late timer
    count = len(lags)
    await asyncio.sleep(0.05)
    assert len(lags) == count  # stopped


def test_workers_take_the_lowest_free_slot_and_a_replacement_takes_the_dead_ones(tmp_path: Path) -> None:
    first, second = WorkerSlot(tmp_path), WorkerSlot(tmp_path)
    assert (first.number, second.number) == (0, 1)
    first.release()  # the worker died: the kernel releases its lock
    third = WorkerSlot(tmp_path)
    assert third.number == 0
    assert WorkerSlot(None).number == 0  # one process: worker "0"
    second.release()
    third.release()
