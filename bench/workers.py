"""More workers are never slower: ``serve --workers 1, 2, 4`` under loadgen's mix, on every store.

The service runs on one core (``taskset -c 0``) and ``loadgen`` on the other, so the client never competes
with the server; loadgen reports its own CPU share, and a run where it was the bottleneck is marked. For
each store (SQLite or PostgreSQL, with or without Redis) the worker counts are run in turn, rows alternated
over rounds. Each round's p50 and p99 are divided by those of the same round's 1-worker run of that store,
and the table gives the median of these ratios (targets: p50 within 1.2x, p99 within 2x). Each run starts once every worker is ready (each
has published its event-loop lag series), with ``--warmup`` seconds (5) of the same load that are reported
apart and not counted: a new worker's first requests compile SQL statements and fill its caches, about
200 ms of CPU each, which four new workers on one core pay at once (sqlite+redis x4, 5-s windows after
start: p99 271 and 77 ms in the first, 43-100 ms after). /metrics is scraped every second during the
measured load, and the lag histogram's growth over it gives the longest any worker's loop was late (the
highest bucket ``event_loop_lag_seconds`` reached, target 20 ms); ``event_loop_late_seconds`` says why:
the longest the workers' own code held a loop ("held"), and each run's lateness by cause (busy: own code;
cpu_wait: waiting for the core the workers share; other: the host). The stores run on the client's core
(``Backends``). Each row also gives the service's CPU per answered request (every process of it, from
/proc): with more workers on one core the same requests cost more CPU, their working sets sharing one
core's caches (SQLite, 2026-12-03: 1.83 / 2.19 / 2.78 ms of user CPU a request for 1 / 2 / 4 workers, with
the same database transactions a request), and that, not waiting, is what four workers add to p50. Each
run's line also gives, a request, the transactions committed in PostgreSQL, the commands Redis processed
and the service's context switches (``Work``): equal work counts with more CPU mean the same work runs
slower (2026-12-04, PostgreSQL+Redis, 1 and 4 workers: 0.85 and 0.88 commits, 2.03 and 2.04 Redis
commands, 5.8 and 8.1 switches, 0.2 and 1.5 preemptions a request; ``perf record -e cpu-clock`` put the
extra CPU in the same code, pydantic-core's compiled validators +27 %, the interpreter +36 %).

    uv run python -m bench.workers                       # every store, 20 s runs, 3 rounds
    uv run python -m bench.workers --stores sqlite --seconds 20 --rounds 1
    uv run python -m bench.workers --soak 1800           # 30 minutes on --workers 2, PostgreSQL and Redis

With ``AGENTIC_LOOP_HOLD_TRACE_MS=20`` in the environment the workers log the stack of any hold of 20 ms or
more (monitoring/waits.py's ``HoldTracer``, which costs each worker a wake-up every 10 ms), and the soak
prints each window's reports with their innermost frames.

The soak runs loadgen in 5-minute windows and prints each as it ends (requests, failures, p50/p99, the
workers' memory sampled each 30 s, the CPU a request of the service and of the stores (PostgreSQL's
queries, its upkeep, Redis), loadgen's CPU), then compares the first window with the last and checks
that the ledger's tokens equal the metrics' at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import CLIENT_CPU, SERVER_CPU, free_port, proc_status, process_cpu_seconds, table

ADMIN = "agb_bench_workers_" + "x" * 32
KINDS = ("conversation", "health", "query (new)")


class Backends:
    """Where the stores run. By default a PostgreSQL cluster and a redis-server of the bench's own, started
    on the client's core (``taskset -c 1``, beside loadgen): the service alone is on its core, as the stores
    would be on their own hosts. Left unpinned (the machine's shared servers, ``--shared-stores``), the
    scheduler ran Redis on the service's core too: with 4 workers its replies waited behind the workers'
    turns (sqlite+redis x4: p99 267 ms unpinned, 54 and 58 ms with that same Redis pinned to core 1; 1
    worker: 53 ms)."""

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.folder = Path(tempfile.mkdtemp(prefix="bench-stores-"))
        self._postgres: Any = None
        self._redis: Any = None
        self._serving: dict[int, float] = {}  # each backend seen serving: its CPU when last read
        self._ended = 0.0  # the CPU of serving backends that have ended, as last read

    @property
    def postgres(self) -> tuple[str, str]:
        """A SQLAlchemy URL without the database's name, and psql's connection flags."""
        if self.shared:
            return "postgresql+asyncpg://postgres@127.0.0.1:5432/", "-h 127.0.0.1 -p 5432"
        if self._postgres is None:
            from tests.integration.faults import PostgresCluster

            self._postgres = PostgresCluster(runner=("taskset", "-c", CLIENT_CPU), durable=True)
        port = self._postgres.port
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/", f"-h 127.0.0.1 -p {port}"

    @property
    def redis(self) -> str:
        """A Redis URL without the database's number."""
        if self.shared:
            return "redis://127.0.0.1:6379/"
        if self._redis is None:
            from tests.integration.faults import RedisServer

            self._redis = RedisServer(self.folder / "redis", runner=("taskset", "-c", CLIENT_CPU))
        return f"redis://127.0.0.1:{self._redis.port}/"

    def cpu_seconds(self) -> dict[str, float]:
        """The CPU the bench's own stores have used so far (the shared ones: none): PostgreSQL's backends
        serving connections ("queries"), the rest of it ("upkeep": the postmaster with its ended children,
        autovacuum's among them, the checkpointer, the writers), and redis-server. A serving backend that
        ends (a connection the pool closed) leaves its CPU in the postmaster's reaped children: it stays
        under "queries", as last read, and is taken out of "upkeep"."""
        used = {"queries": 0.0, "upkeep": 0.0, "redis": 0.0}
        if self._postgres is not None:
            postmaster, *children = self._postgres.processes()
            used["upkeep"] += process_cpu_seconds(postmaster, reaped=True)
            alive = set()
            for pid in children:
                with contextlib.suppress(OSError):
                    serving = b"127.0.0.1(" in Path(f"/proc/{pid}/cmdline").read_bytes()
                    cpu = process_cpu_seconds(pid)
                    used["queries" if serving else "upkeep"] += cpu
                    if serving:
                        self._serving[pid] = cpu
                        alive.add(pid)
            for pid in set(self._serving) - alive:
                self._ended += self._serving.pop(pid)
            used["queries"] += self._ended
            used["upkeep"] -= self._ended
        if self._redis is not None and self._redis.process is not None:
            used["redis"] += cpu_seconds([self._redis.process.popen.pid])
        return used

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.destroy()
        if self._redis is not None:
            self._redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


BACKENDS = Backends(shared=False)  # main() sets it from --shared-stores


@dataclass
class Result:
    p50: float
    p99: float
    requests: int
    failed: int
    cpu_share: float
    saturated: bool
    kinds: dict[str, list[float]]  # traffic kind: [p50, p99]
    errors: dict[str, int]  # what the requests without an answer met
    service_cpu: float = 0.0  # seconds of the service's CPU (every process) per answered request
    hold: float = 0.0  # the longest any worker's loop was late, from the scrape after the run
    busy: float = 0.0  # the longest any worker's own code held its loop (the busy part of a lateness)


@dataclass
class Store:
    name: str
    postgres: bool
    redis: bool


STORES = {
    "sqlite": Store("sqlite", False, False),
    "sqlite+redis": Store("sqlite+redis", False, True),
    "postgresql": Store("postgresql", True, False),
    "postgresql+redis": Store("postgresql+redis", True, True),
}


class Service:
    """``agentic-backend serve --workers N`` on the server core, on a new database (and Redis db)."""

    def __init__(self, workers: int, store: Store) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        self.port = free_port()
        self.workers = workers
        env = {**os.environ, "AGENTIC_DATA_DIR": str(self.folder), "AGENTIC_ADMIN_API_KEY": ADMIN}
        env.pop("AGENTIC_DATABASE_URL", None)
        env.pop("AGENTIC_REDIS_URL", None)
        self.database = ""
        self.redis = ""
        if store.postgres:
            self.database = f"bench_workers_{secrets.token_hex(4)}"
            _psql(f"CREATE DATABASE {self.database}")
            env["AGENTIC_DATABASE_URL"] = BACKENDS.postgres[0] + self.database
        if store.redis:
            redis = BACKENDS.redis + "7"
            subprocess.run(["redis-cli", "-u", redis, "flushdb"], check=True, capture_output=True)
            env["AGENTIC_REDIS_URL"] = redis
            self.redis = redis
        command = [sys.executable, "-m", "agentic_backend", "serve", "--port", str(self.port)]
        command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        self.log = (self.folder / "serve.log").open("wb")
        prefix = os.environ.get("BENCH_PREFIX", "").split()
        self.process = subprocess.Popen(
            [*prefix, "taskset", "-c", SERVER_CPU, *command], env=env, stderr=self.log
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self) -> None:
        """Until a scrape shows every worker's event-loop lag series: each starts it at the end of its
        start-up, so then every worker accepts connections."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {(self.folder / 'serve.log').read_text()[-2000:]}")
            try:
                text = httpx.get(self.url + "/api/v1/monitoring/metrics", timeout=2).text
                if (
                    len(set(re.findall(r'event_loop_lag_seconds_count\{worker="(\d+)"', text)))
                    >= self.workers
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the workers did not all start within 120 s")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        pids = []
        for pid in map(int, children):
            try:
                if "multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_text() or self.workers == 1:
                    pids.append(pid)
            except FileNotFoundError:
                continue
        return pids or [self.process.pid]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        if self.database:
            _psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def _psql(sql: str, database: str = "postgres") -> str:
    """Run ``sql`` in ``database`` of the bench's PostgreSQL; its rows, unaligned, without headers."""
    return subprocess.run(
        ["psql", "-qtA", *BACKENDS.postgres[1].split(), "-U", "postgres", "-d", database, "-c", sql],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout


@dataclass
class Work:
    """Counters of the work the service asked of others, and of its processes' context switches, read
    before and after a run: their growth per request says whether more workers do more work for the same
    requests (more commits, Redis commands, switches) or the same work more slowly."""

    commits: int  # transactions committed in the service's PostgreSQL database (SQLite: 0)
    redis: int  # commands the bench's Redis processed (no Redis: 0)
    switches: int  # the service's processes giving up the CPU to wait (voluntary context switches)
    preempted: int  # ... and having it taken while running (involuntary)

    @classmethod
    def read(cls, service: Service, processes: list[int]) -> Work:
        commits = 0
        if service.database:
            sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            commits = int(_psql(sql, service.database).strip() or 0)
        redis = 0
        if service.redis:
            out = subprocess.run(
                ["redis-cli", "-u", service.redis, "info", "stats"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            redis = int(re.search(r"total_commands_processed:(\d+)", out).group(1))  # type: ignore[union-attr]
        switches = preempted = 0
        for pid in processes:
            with contextlib.suppress(FileNotFoundError):
                status = proc_status(pid)
                switches += int(status["voluntary_ctxt_switches"])
                preempted += int(status["nonvoluntary_ctxt_switches"])
        return cls(commits, redis, switches, preempted)

    def per_request(self, before: Work, requests: int) -> str:
        def each(after: int, earlier: int) -> str:
            return f"{(after - earlier) / max(1, requests):.2f}"

        return (
            f"a request: {each(self.commits, before.commits)} commits, {each(self.redis, before.redis)} "
            f"Redis commands, {each(self.switches, before.switches)} switches, "
            f"{each(self.preempted, before.preempted)} preemptions"
        )


def rss_bytes(pid: int) -> int:
    return int(proc_status(pid).get("VmRSS", "0 kB").split()[0]) * 1024  # none: a zombie


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used so far (those that have ended: none)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            total += process_cpu_seconds(pid)
    return total


def loadgen_command(url: str, rate: float, seconds: float) -> list[str]:
    """loadgen on the client core, in a process of its own, printing a Result as JSON."""
    command = ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "bench.workers", "--loadgen", url]
    return [*command, str(rate), str(seconds)]


def run_loadgen(url: str, rate: float, seconds: float) -> Result:
    out = subprocess.run(loadgen_command(url, rate, seconds), check=True, capture_output=True, text=True)
    return Result(**json.loads(out.stdout))


def _loadgen_main(url: str, rate: float, seconds: float) -> None:
    import asyncio

    from agentic_backend import loadgen

    stats = asyncio.run(
        loadgen.generate(url, ADMIN, rate, seconds, quiet=True, stats=loadgen.Stats(keep_answers=True))
    )
    answered = stats.answers
    every = [elapsed for _, _, _, elapsed in answered]
    result = Result(
        p50=statistics.median(every),
        p99=loadgen.percentile(every, 0.99),
        requests=len(answered),
        failed=sum(1 for _, _, status, _ in answered if status == 0),
        cpu_share=stats.cpu_share,
        saturated=stats.saturated,
        kinds={
            kind: [statistics.median(v), loadgen.percentile(v, 0.99)]
            for kind in KINDS
            if (v := [e for _, k, _, e in answered if k == kind])
        },
        errors=dict(stats.errors),
    )
    print(json.dumps(asdict(result)))


def buckets(metrics: str, name: str, selector: str = "") -> dict[str, float]:
    """A histogram's cumulative buckets in a scrape, summed over workers (and over series whose labels
    hold ``selector``, such as ``cause="busy"``), by edge."""
    per_edge: dict[str, float] = defaultdict(float)
    for labels, le, value in re.findall(rf'^{name}_bucket\{{([^}}]*)le="([^"]+)"\}} (\S+)', metrics, re.M):
        if selector in labels:
            per_edge[le] += float(value)
    return per_edge


@dataclass
class Loops:
    """The workers' loops in one scrape: event_loop_lag_seconds' buckets (how late they ran their timers),
    event_loop_late_seconds' busy buckets (how long their own code held them) and its sums by cause."""

    lag: dict[str, float]
    busy: dict[str, float]
    causes: dict[str, float]

    @classmethod
    def scrape(cls, url: str) -> Loops:
        metrics = httpx.get(url + "/api/v1/monitoring/metrics", timeout=30).text
        causes: dict[str, float] = defaultdict(float)
        for cause, value in re.findall(
            r'^event_loop_late_seconds_sum\{[^}]*cause="([^"]+)"[^}]*\} (\S+)', metrics, re.M
        ):
            causes[cause] += float(value)
        return cls(
            buckets(metrics, "event_loop_lag_seconds"),
            buckets(metrics, "event_loop_late_seconds", 'cause="busy"'),
            causes,
        )


def lateness(before: dict[str, float], after: dict[str, float]) -> str:
    """What made the loops' timers late (those 5 ms late or more) between two scrapes, in ms."""
    return ", ".join(
        f"{cause} {(after[cause] - before.get(cause, 0.0)) * 1000:.0f}" for cause in sorted(after)
    )


def longest_hold(before: dict[str, float], after: dict[str, float]) -> float:
    """The highest bucket edge of a histogram (``buckets``) that an observation between two scrapes
    reached (inf if past the last edge; 0 if there was none)."""
    grown = {le: after[le] - before.get(le, 0.0) for le in after}
    total = grown.get("+Inf", 0.0)
    if total == 0:
        return 0.0
    for le in sorted((e for e in grown if e != "+Inf"), key=float):
        if grown[le] >= total:
            return float(le)
    return float("inf")


class Scraper:
    """Scrapes /metrics every ``interval`` seconds while the load runs, as Prometheus would: a scrape's
    merge of every worker's values must not hold a loop either."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self._url, self._interval = url, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.wait(self._interval):
                client.get(self._url + "/api/v1/monitoring/metrics")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def ledger_matches_metrics(url: str) -> tuple[bool, str]:
    headers = {"authorization": f"Bearer {ADMIN}"}
    totals = httpx.get(url + "/api/v1/usage", params={"limit": 0}, headers=headers, timeout=30).json()[
        "totals"
    ]
    metrics = httpx.get(url + "/api/v1/monitoring/metrics", timeout=30).text
    tokens = {
        kind: sum(
            float(v)
            for v in re.findall(rf'^api_tokens_total\{{[^}}]*type="{kind}"[^}}]*\}} (\S+)', metrics, re.M)
        )
        for kind in ("input", "output")
    }
    same = tokens["input"] == totals["input_tokens"] and tokens["output"] == totals["output_tokens"]
    return same, (
        f"ledger {totals['queries']} queries, {totals['input_tokens']}/{totals['output_tokens']} tokens; "
        f"metrics {tokens['input']:.0f}/{tokens['output']:.0f} tokens"
    )


def matrix(
    stores: list[Store], counts: list[int], rounds: int, seconds: float, rate: float, warmup: float
) -> None:
    results: dict[tuple[str, int], list[Result]] = defaultdict(list)
    for round_number in range(rounds):
        order = counts if round_number % 2 == 0 else list(reversed(counts))  # rows alternated
        for store in stores:
            for workers in order:
                service = Service(workers, store)
                try:
                    warm = ""
                    if warmup > 0:  # the same load, not counted: a new worker's first requests compile
                        first = run_loadgen(service.url, rate, warmup)
                        warm = f" (warm-up: p50 {first.p50 * 1000:.1f} ms, p99 {first.p99 * 1000:.1f} ms)"
                    before = Loops.scrape(service.url)
                    processes = sorted({service.process.pid, *service.worker_pids()})
                    cpu = cpu_seconds(processes)
                    work = Work.read(service, processes)
                    scraper = Scraper(service.url)
                    try:
                        result = run_loadgen(service.url, rate, seconds)
                    finally:
                        scraper.stop()
                    result.service_cpu = (cpu_seconds(processes) - cpu) / max(1, result.requests)
                    done = Work.read(service, processes).per_request(work, result.requests)
                    after = Loops.scrape(service.url)
                    result.hold = longest_hold(before.lag, after.lag)
                    result.busy = longest_hold(before.busy, after.busy)
                    late = lateness(before.causes, after.causes)
                finally:
                    service.stop()
                results[(store.name, workers)].append(result)
                print(
                    f"round {round_number + 1} {store.name} x{workers}: p50 {result.p50 * 1000:.1f} ms, "
                    f"p99 {result.p99 * 1000:.1f} ms, loop late <= {result.hold * 1000:.0f} ms, held by "
                    f"its own code <= {result.busy * 1000:.0f} ms (lateness by cause, ms: {late}), "
                    f"failed {result.failed}, service CPU {result.service_cpu * 1000:.2f} ms a request, "
                    f"loadgen {result.cpu_share:.0%}"
                    + (" (loadgen saturated)" if result.saturated else "")
                    + f"; {done}"
                    + warm,
                    flush=True,
                )
    rows = []
    for store in stores:
        base = results[(store.name, counts[0])]
        for workers in counts:
            runs = results[(store.name, workers)]
            p50 = statistics.median(r.p50 for r in runs)
            p99 = statistics.median(r.p99 for r in runs)
            # Each round's ratio against the 1-worker run of the same round, then their median: the
            # machine's speed drifts over minutes (the same 1-worker row gave p50 4.1 and 5.3 ms ten
            # minutes apart), and a ratio of two medians taken from different rounds carries that drift.
            vs50 = statistics.median(r.p50 / b.p50 for r, b in zip(runs, base, strict=True))
            vs99 = statistics.median(r.p99 / b.p99 for r, b in zip(runs, base, strict=True))
            kinds = "  ".join(
                f"{statistics.median(r.kinds[kind][0] for r in runs) * 1000:.0f}/"
                f"{statistics.median(r.kinds[kind][1] for r in runs) * 1000:.0f}"
                for kind in KINDS
            )
            rows.append(
                [
                    store.name,
                    str(workers),
                    f"{p50 * 1000:.1f}",
                    f"{p99 * 1000:.1f}",
                    f"{vs50:.2f}x",
                    f"{vs99:.2f}x",
                    f"{max(r.hold for r in runs) * 1000:.0f}",
                    f"{max(r.busy for r in runs) * 1000:.0f}",
                    f"{statistics.median(r.service_cpu for r in runs) * 1000:.2f}",
                    str(sum(r.failed for r in runs)),
                    kinds,
                ]
            )
    print()
    print(
        f"{rate:g} requests/s of loadgen's mix for {seconds:g} s, {rounds} round(s); medians; ms; "
        "'vs 1': the median over rounds of each round's ratio to its own 1-worker run"
    )
    headers = [
        "store",
        "workers",
        "p50",
        "p99",
        "p50 vs 1",
        "p99 vs 1",
        "loop late <=",
        "held <=",
        "CPU/request",
        "failed",
    ]
    print(table([*headers, "conversation / health / query (new) p50/p99"], rows))


def hold_reports(log: Path, offset: int) -> tuple[list[str], int]:
    """The hold tracer's reports that ``log`` gained after ``offset`` (its first line and innermost frames),
    and the new offset."""
    with log.open("rb") as file:
        file.seek(offset)
        text = file.read().decode(errors="replace")
    reports = []
    for report in re.split(r"\n(?=\S)", text):  # a record and its indented stack lines
        if "event loop held for" in report:
            lines = report.splitlines()
            reports.append("\n".join([lines[0], *lines[-8:]] if len(lines) > 9 else lines))
    return reports, offset + len(text.encode())


def soak(seconds: float, rate: float, window: float = 300) -> None:
    """``seconds`` of load on --workers 2 (PostgreSQL and Redis) as successive loadgen runs of ``window``
    seconds, each printed as it ends: a soak cut short still says what it saw."""
    service = Service(2, STORES["postgresql+redis"])
    print(f"soak: {seconds:g} s at {rate:g} requests/s, --workers 2, PostgreSQL and Redis", flush=True)
    windows: list[tuple[Result, list[int]]] = []
    log_read = 0
    try:
        before = window_start = Loops.scrape(service.url)
        scraper = Scraper(service.url, interval=15.0)
        started = time.monotonic()
        while (left := seconds - (time.monotonic() - started)) > 1:
            length = min(window, left)
            loader = subprocess.Popen(
                loadgen_command(service.url, rate, length), stdout=subprocess.PIPE, text=True
            )
            memory = []
            processes = sorted({service.process.pid, *service.worker_pids()})
            cpu, stores_cpu = cpu_seconds(processes), BACKENDS.cpu_seconds()
            while True:  # the workers' memory every 30 s until this window's loadgen ends
                memory.append(sum(rss_bytes(p) for p in service.worker_pids()))
                try:
                    loader.wait(timeout=min(30.0, length / 4))
                    break
                except subprocess.TimeoutExpired:
                    continue
            assert loader.stdout is not None
            assert loader.returncode == 0
            result = Result(**json.loads(loader.stdout.read()))
            result.service_cpu = (cpu_seconds(processes) - cpu) / max(1, result.requests)
            stores = {
                name: (used - stores_cpu[name]) / max(1, result.requests)
                for name, used in BACKENDS.cpu_seconds().items()
            }
            windows.append((result, memory))
            at = (time.monotonic() - started) / 60
            window_end = Loops.scrape(service.url)
            late = lateness(window_start.causes, window_end.causes)
            window_start = window_end
            print(
                f"to minute {at:4.1f}: {result.requests} requests, failed {result.failed}, p50 "
                f"{result.p50 * 1000:.1f} ms, p99 {result.p99 * 1000:.1f} ms, workers' memory "
                f"{statistics.median(memory) / 2**20:.0f} MiB, CPU a request: service "
                f"{result.service_cpu * 1000:.2f} ms, stores {sum(stores.values()) * 1000:.2f} ms ("
                + ", ".join(f"{name} {used * 1000:.2f}" for name, used in stores.items())
                + f"); loadgen "
                f"{result.cpu_share:.0%}"
                + (" (loadgen saturated)" if result.saturated else "")
                + f"; loops late by cause, ms: {late}"
                + (f"; no answer: {result.errors}" if result.errors else ""),
                flush=True,
            )
            reports, log_read = hold_reports(service.folder / "serve.log", log_read)
            for report in reports:
                print("  " + report.replace("\n", "\n  "), flush=True)
        scraper.stop()
        same, ledger = ledger_matches_metrics(service.url)
        after = Loops.scrape(service.url)
        hold, busy = longest_hold(before.lag, after.lag), longest_hold(before.busy, after.busy)
    finally:
        service.stop()
    (first, first_memory), (last, last_memory) = windows[0], windows[-1]
    growth = statistics.median(last_memory) / statistics.median(first_memory) - 1
    print(f"requests {sum(r.requests for r, _ in windows)}, failed {sum(r.failed for r, _ in windows)}")
    print(f"p99 first window {first.p99 * 1000:.0f} ms, last {last.p99 * 1000:.0f} ms")
    print(
        f"workers' memory: first window {statistics.median(first_memory) / 2**20:.0f} MiB, last "
        f"{statistics.median(last_memory) / 2**20:.0f} MiB ({growth:+.1%})"
    )
    print(
        f"loops late <= {hold * 1000:.0f} ms, held by their own code <= {busy * 1000:.0f} ms; "
        f"ledger = metrics: {same} ({ledger})"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        _loadgen_main(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated: " + ", ".join(STORES))
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument("--soak", type=float, default=0, help="seconds of the soak instead of the matrix")
    parser.add_argument("--window", type=float, default=300, help="seconds of each of the soak's windows")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="seconds of the same load before each measured run, reported apart (0: none)",
    )
    parser.add_argument(
        "--shared-stores",
        action="store_true",
        help="the machine's PostgreSQL (5432) and Redis (6379), unpinned, instead of the bench's own on core 1",
    )
    args = parser.parse_args()
    BACKENDS.shared = args.shared_stores
    try:
        if args.soak:
            soak(args.soak, args.rate, args.window)
            return
        stores = [STORES[name] for name in args.stores.split(",")]
        counts = [int(n) for n in args.workers.split(",")]
        matrix(stores, counts, args.rounds, args.seconds, args.rate, args.warmup)
    finally:
        BACKENDS.close()


if __name__ == "__main__":
    main()
