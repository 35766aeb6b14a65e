"""The event-loop monitor and the worker slot."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentic_backend import state
from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from agentic_backend.monitoring.waits import (
    LATE,
    REST,
    EventLoopMonitor,
    HoldTracer,
    SchedStat,
    WorkerSlot,
    split_lateness,
    thread_state,
)
from tests.conftest import ClientFor


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


def _timed_monitor(busy: list[bool]) -> tuple[EventLoopMonitor, list[float], list[float]]:
    """A monitor (not started) whose worker is busy while ``busy[0]``, with its lags and when each ran."""
    lags: list[float] = []
    times: list[float] = []

    def observe(lag: float) -> None:
        lags.append(lag)
        times.append(time.monotonic())

    return EventLoopMonitor(observe, interval=0.01, busy=lambda: busy[0]), lags, times


def _gaps(times: list[float], since: float) -> list[float]:
    later = [t for t in times if t >= since]
    return [b - a for a, b in itertools.pairwise(later)]


async def test_the_monitor_rests_while_idle_and_a_request_wakes_it() -> None:
    # Every wake-up costs CPU: an idle worker's timers are REST apart, not 10 ms; work brings back 10 ms.
    busy = [False]
    monitor, lags, times = _timed_monitor(busy)
    monitor.start()
    try:
        await asyncio.sleep(0.3)
        assert monitor.resting
        idle = _gaps(times, since=times[2])
        assert idle
        assert min(idle) >= REST * 0.9, idle  # resting: timers REST apart
        busy[0] = True  # a request arrives: the middleware wakes the monitor
        monitor.wake()
        woken = time.monotonic()
        assert not monitor.resting
        time.sleep(0.06)  # the request holds the loop  # noqa: ASYNC251
        await asyncio.sleep(0.1)
        # The hold is measured as a busy worker's: the timer due 10 ms after the wake-up is 50 ms late.
        assert 0.04 <= max(lags) < 0.2, lags
        assert not monitor.resting  # a request in flight: about 10 ms apart (resting: 2 in the 100 ms)
        assert len(_gaps(times, since=woken + 0.06)) >= 4, times
        busy[0] = False  # the request ended: rests again at the next timer
        await asyncio.sleep(0.05)
        assert monitor.resting
    finally:
        monitor.stop()


async def test_the_last_request_ending_rests_the_monitor_at_once() -> None:
    # A request shorter than the interval costs the worker no timer: the middleware's idle() at its end
    # moves the 10-ms timer to REST from now.
    busy = [False]
    monitor, lags, times = _timed_monitor(busy)
    monitor.start()
    try:
        await asyncio.sleep(0.15)
        assert monitor.resting
        busy[0] = True
        monitor.wake()
        assert not monitor.resting
        await asyncio.sleep(0.002)  # the request, shorter than the interval
        busy[0] = False
        ended = time.monotonic()
        count = len(lags)
        monitor.idle()
        assert monitor.resting
        await asyncio.sleep(REST * 0.8)
        assert len(lags) == count, _gaps(times, since=ended)  # no timer 10 ms after the request
        await asyncio.sleep(REST * 0.4)
        assert len(lags) == count + 1  # the resting timer, REST after the request's end
        assert times[-1] - ended >= REST * 0.9
    finally:
        monitor.stop()


async def test_a_request_that_held_the_loop_past_the_due_time_is_still_measured() -> None:
    busy = [False]
    monitor, lags, _ = _timed_monitor(busy)
    monitor.start()
    try:
        await asyncio.sleep(0.15)
        busy[0] = True
        monitor.wake()
        time.sleep(0.04)  # the request holds the loop 30 ms past the timer's due time  # noqa: ASYNC251
        busy[0] = False
        monitor.idle()  # the timer is overdue: it is not moved, and runs next
        assert not monitor.resting
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
    finally:
        monitor.stop()
    assert 0.025 <= max(lags) < 0.2, lags


async def test_a_resting_monitor_whose_thread_computes_goes_back_to_10_ms() -> None:
    # Background work (no request in flight) that keeps the thread running also brings back the pace.
    monitor, _, times = _timed_monitor([False])
    monitor.start()
    try:
        await asyncio.sleep(0.2)
        assert monitor.resting
        end = time.monotonic() + 0.3
        while time.monotonic() < end:  # 5 ms of computing at a time, the loop free in between
            chunk = time.thread_time() + 0.005
            while time.thread_time() < chunk:
                pass
            await asyncio.sleep(0.001)
            if not monitor.resting:
                break
        assert not monitor.resting
        await asyncio.sleep(0.03)  # the next timer is due 10 ms after the one that found the thread busy
    finally:
        monitor.stop()
    assert min(_gaps(times, since=times[0])) < 0.03


async def test_the_app_rests_its_monitor_while_idle_and_each_request_wakes_it(
    make_settings: Callable[..., Settings], client_for: ClientFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(make_settings())
    async with client_for(app) as client:
        monitor = state.of(app).telemetry.loop_monitor
        for _ in range(50):
            if monitor.resting:
                break
            await asyncio.sleep(0.02)
        assert monitor.resting
        woken = []
        wake = monitor.wake

        def spy() -> None:
            woken.append(monitor.resting)
            wake()

        monkeypatch.setattr(monitor, "wake", spy)
        assert (await client.get("/api/v1/monitoring/health")).status_code == 200
        assert woken == [True]
        assert monitor.resting  # the request ended, nothing else in flight: resting at once


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


def _hold_the_loop_on_purpose(seconds: float) -> None:
    time.sleep(seconds)


def _hold_reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "agentic_backend.monitoring.waits"]


async def test_the_hold_tracer_logs_the_stack_of_the_code_that_holds_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="agentic_backend.monitoring.waits")
    monitor = EventLoopMonitor(lambda _: None, interval=0.01, trace_after=0.02)
    monitor.start()
    try:
        await asyncio.sleep(0.1)
        _hold_the_loop_on_purpose(0.15)
        await asyncio.sleep(0.05)
    finally:
        monitor.stop()
    reports = [report for report in _hold_reports(caplog) if "_hold_the_loop_on_purpose" in report]
    # checked every 10 ms, reported at 20 ms and at each doubling of the hold (20-30, 40-60, 80-120 ms)
    assert 1 <= len(reports) <= 4, _hold_reports(caplog)
    assert "time.sleep(seconds)" in reports[0]
    assert "garbage collection" not in reports[0]
    held = [float(report.split("held for ")[1].split(" ms")[0]) for report in reports]
    assert held == sorted(held), held
    assert held[0] >= 20, held
    if SchedStat().available:  # sleeping is neither running nor waiting for a CPU
        ran = float(reports[0].split("its thread ran ")[1].split(" ms")[0])
        assert ran < held[0] / 2, reports[0]
        assert "its thread is S, sleeping in a system call (a call that blocks), at:" in reports[0]
    await asyncio.sleep(0.05)
    assert len(_hold_reports(caplog)) == len(reports)  # stopped: no more checks


async def test_the_hold_tracer_says_when_the_garbage_collector_holds_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gc

    caplog.set_level("WARNING", logger="agentic_backend.monitoring.waits")

    def slow_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _hold_the_loop_on_purpose(0.06)  # a collection of a large heap, made slow on purpose

    monitor = EventLoopMonitor(lambda _: None, interval=0.01, trace_after=0.02)
    monitor.start()  # the tracer's own gc callback comes before ours: it knows a collection started
    gc.callbacks.append(slow_collection)
    try:
        await asyncio.sleep(0.03)
        gc.collect()
        await asyncio.sleep(0.03)
    finally:
        gc.callbacks.remove(slow_collection)
        monitor.stop()
    reports = _hold_reports(caplog)
    assert reports
    assert "during a garbage collection of generation 2" in reports[0], reports


def test_a_hold_trace_shorter_than_5_ms_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="loop_hold_trace_ms"):
        Settings(loop_hold_trace_ms=3)
    assert Settings(loop_hold_trace_ms=0).loop_hold_trace_ms == 0
    assert Settings(loop_hold_trace_ms=20).loop_hold_trace_ms == 20


async def test_the_service_traces_holds_when_asked(
    make_settings: Callable[..., Settings], client_for: ClientFor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="agentic_backend.monitoring.waits")
    app = create_app(make_settings(loop_hold_trace_ms=20))
    async with client_for(app) as client:
        assert (await client.get("/api/v1/monitoring/health")).status_code == 200
        # No request in flight: the monitor rests (its timer REST away), so the hold passes it by 50 ms.
        _hold_the_loop_on_purpose(REST + 0.05)
        await asyncio.sleep(0.02)
    assert any("_hold_the_loop_on_purpose" in report for report in _hold_reports(caplog))
    assert not [thread for thread in threading.enumerate() if thread.name == "loop-hold-tracer"]  # stopped


def test_a_hold_report_says_when_the_thread_mostly_waited_for_a_cpu() -> None:
    """The report's split, from the loop thread's scheduler statistics read before the hold and at it."""

    class Timer:  # the monitor's pending timer: due at 1.0 s, not run yet
        due, last = 1.0, 0.99

    class Stat:
        def __init__(self) -> None:
            self.readings = [(10.000, 5.000), (10.040, 5.002), (10.050, 5.002), (10.052, 5.060)]

        def read(self) -> tuple[float, float]:
            return self.readings.pop(0)

    tracer = HoldTracer(Timer(), after=0.02)  # type: ignore[arg-type]
    tracer._stat = Stat()  # type: ignore[assignment]
    tracer._loop_thread = threading.get_ident()
    assert tracer.check(1.01) is None  # 10 ms late: no hold yet; the statistics before it are kept
    computing = tracer.check(1.05)  # 50 ms held, its thread ran 40 of the 40 ms since
    assert computing is not None
    assert (
        "held for 50 ms so far (of the last 40 ms its thread ran 40 ms and waited for a CPU 2 ms)"
        in computing
    )
    Timer.due, Timer.last = 2.0, 1.06
    assert tracer.check(2.0) is None
    waiting = tracer.check(2.03)  # 30 ms late, the thread ran 2 ms and waited 58
    assert waiting is not None
    assert "ran 2 ms and waited for a CPU 58 ms; mostly the wait: not this code's hold" in waiting
    if SchedStat().available:  # Linux: the thread that asks is running
        assert thread_state(threading.get_native_id()) == "R"
    assert thread_state(2**22 + 12345) is None  # no such thread
