"""The event-loop monitor and the worker slot."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentic_backend.monitoring.waits import LATE, EventLoopMonitor, SchedStat, WorkerSlot, split_lateness


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


def test_lateness_is_split_between_waiting_for_a_cpu_running_and_neither() -> None:
    # 30 ms late: the thread waited 20 ms in the run queue and ran 50 ms (its own callbacks).
    assert split_lateness(0.03, ran=0.05, waited=0.02) == pytest.approx((0.01, 0.02, 0.0))
    # A loop held by its own code: it ran all along.
    assert split_lateness(0.08, ran=0.09, waited=0.0) == pytest.approx((0.08, 0.0, 0.0))
    # A paused machine: the thread neither ran nor waited for most of it.
    assert split_lateness(0.06, ran=0.002, waited=0.001) == pytest.approx((0.002, 0.001, 0.057))
    # Waiting longer than the lateness counts the lateness only; a counter read backwards counts nothing.
    assert split_lateness(0.01, ran=0.0, waited=0.5) == pytest.approx((0.0, 0.01, 0.0))
    assert split_lateness(0.01, ran=-1.0, waited=-1.0) == pytest.approx((0.0, 0.0, 0.01))


def _monitor_by_cause() -> tuple[EventLoopMonitor, list[float], dict[str, float]]:
    """A monitor (not started) with the lags it records and the lateness it adds up by cause."""
    causes: dict[str, float] = {}
    lags: list[float] = []

    def late_by(cause: str, seconds: float) -> None:
        causes[cause] = causes.get(cause, 0.0) + seconds

    return EventLoopMonitor(lags.append, interval=0.01, late_by=late_by), lags, causes


@pytest.mark.skipif(not SchedStat().available, reason="needs Linux's /proc/<pid>/task/<tid>/schedstat")
async def test_a_loop_held_by_its_own_code_is_late_because_busy() -> None:
    monitor, lags, causes = _monitor_by_cause()
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        deadline = time.thread_time() + 0.08
        while time.thread_time() < deadline:  # the loop's own code computes for 80 ms of CPU
            pass
        await asyncio.sleep(0.03)
    finally:
        monitor.stop()
    assert sum(causes.values()) == pytest.approx(sum(lag for lag in lags if lag >= LATE))
    assert causes.get("busy", 0.0) >= 0.05, causes  # this process ran: its own code held the loop
    assert causes.get("other", 0.0) < 0.03, causes


@pytest.mark.skipif(not SchedStat().available, reason="needs Linux's /proc/<pid>/task/<tid>/schedstat")
async def test_a_loop_whose_process_is_stopped_is_late_for_another_cause() -> None:
    """SIGSTOP, as a host pausing a virtual machine would: the thread neither runs nor waits for a CPU."""
    monitor, lags, causes = _monitor_by_cause()
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        # A child stops this process for 100 ms, then continues it.
        stopper = subprocess.Popen(  # noqa: ASYNC220 (starting it briefly holds the loop: harmless here)
            [
                sys.executable,
                "-c",
                f"import os,signal,time; os.kill({os.getpid()}, signal.SIGSTOP); "
                f"time.sleep(0.1); os.kill({os.getpid()}, signal.SIGCONT)",
            ]
        )
        await asyncio.sleep(0.3)
        assert stopper.wait(5) == 0
    finally:
        monitor.stop()
    assert max(lags) >= 0.08, lags
    assert causes.get("other", 0.0) >= 0.07, causes
    assert causes.get("busy", 0.0) < 0.02, causes


@pytest.mark.skipif(not SchedStat().available, reason="needs Linux's /proc/<pid>/task/<tid>/schedstat")
async def test_a_loop_sharing_its_cpu_with_busy_processes_is_late_waiting_for_it() -> None:
    """Four processes computing on the loop's one CPU, as other workers on one core would, while the loop
    computes too: it waits its turn for the CPU (a loop that only sleeps is let in at once on waking)."""
    monitor, lags, causes = _monitor_by_cause()
    affinity = os.sched_getaffinity(0)
    cpu = min(affinity)
    os.sched_setaffinity(0, {cpu})
    hog = "import time\nend = time.monotonic() + 0.6\nwhile time.monotonic() < end: pass"
    command = ["taskset", "-c", str(cpu), sys.executable, "-c", hog]
    hogs = [subprocess.Popen(command) for _ in range(4)]  # noqa: ASYNC220 (before the monitor starts)
    try:
        await asyncio.sleep(0.1)  # the four have started computing
        monitor.start()
        end = time.perf_counter() + 0.4
        while time.perf_counter() < end:  # the worker's own requests: 2 ms of computing at a time
            chunk = time.perf_counter() + 0.002
            while time.perf_counter() < chunk:
                pass
            await asyncio.sleep(0)
    finally:
        monitor.stop()
        os.sched_setaffinity(0, affinity)
        for process in hogs:
            process.wait(10)
    assert causes.get("cpu_wait", 0.0) >= 0.05, (causes, lags)
    assert causes["cpu_wait"] > causes.get("busy", 0.0) + causes.get("other", 0.0), causes
