"""A scrape of ``serve --workers 4`` holding 5,000 series per worker: how long the merge takes against
prometheus_client's multiprocess mode on the same content, and what scrapes once a second do to the p99
latency of other requests.

Part 1, scrape time (in-process, the same content on both sides): four worker processes each write 5,000
counter series (and the built-in metrics' histograms) into a shared folder; the scrape merges and renders
them. prometheus_client's four workers write the same label sets through its own multiprocess files
(PROMETHEUS_MULTIPROC_DIR) and MultiProcessCollector + generate_latest renders them. Target: ours >= 10x
faster.

Part 2, p99 of other requests (real servers): uvicorn --workers 4 with the same 5,000 series per worker;
wrk loads GET / (the index) while a lean client scrapes /metrics once a second, alternating with
rounds without polling and rounds where the same client asks for GET / instead (what the polling itself
costs this machine). Target: p99 within 10 % of the rounds without scrapes.

    uv run python -m bench.scrape_merge [--rounds 3] [--seconds 10] [--only time|latency]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx

from bench.common import free_port, table, wrk

SERIES = 5_000
WORKERS = 4

OURS_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agentic_backend.core.config import Settings
    from agentic_backend.monitoring.service import Telemetry

    telemetry = Telemetry(Settings(metrics_multiprocess_dir=Path(sys.argv[1]),
                                   metrics_max_series_per_metric=100_000))
    for i in range(int(sys.argv[2])):
        telemetry.metrics.http_requests.labels("GET", f"/bench/{i}", "200").inc(i)
    print("ready", flush=True)
    sys.stdin.readline()
    """
)
THEIR_WORKER = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Histogram
    from agentic_backend.monitoring.catalogue import HTTP_DURATION_BUCKETS

    requests = Counter("http_requests", "HTTP requests.", ["method", "endpoint", "status"])
    for i in range(int(sys.argv[2])):
        requests.labels("GET", f"/bench/{i}", "200").inc(i)
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def start_writers(script: str, folder: Path, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    writers = []
    for _ in range(WORKERS):
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(folder), str(SERIES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        writers.append(process)
    return writers


def stop_writers(writers: list[subprocess.Popen[str]]) -> None:
    for process in writers:
        process.communicate("\n", timeout=30)


def timed(scrape: object, repeats: int) -> tuple[float, int]:
    """Median seconds of ``scrape()`` and the lines it rendered."""
    assert callable(scrape)
    times, lines = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        text = scrape()
        times.append(time.perf_counter() - started)
        lines = text.count("\n")
    return statistics.median(times), lines


def scrape_time(repeats: int) -> list[list[str]]:
    from agentic_backend.core.config import Settings
    from agentic_backend.monitoring.exposition import render
    from agentic_backend.monitoring.service import Telemetry

    rows = []
    with tempfile.TemporaryDirectory() as ours_dir, tempfile.TemporaryDirectory() as theirs_dir:
        ours = Path(ours_dir)
        writers = start_writers(OURS_WORKER, ours, {})
        scraper = Telemetry(Settings(metrics_multiprocess_dir=ours, metrics_max_series_per_metric=100_000))
        try:
            render(scraper.snapshot())  # the first scrape maps the pages and reads the journals
            ours_seconds, ours_lines = timed(lambda: render(scraper.snapshot()), repeats)
        finally:
            stop_writers(writers)
            scraper.close()

        env = {"PROMETHEUS_MULTIPROC_DIR": theirs_dir}
        writers = start_writers(THEIR_WORKER, Path(theirs_dir), env)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = theirs_dir
        try:
            from prometheus_client import CollectorRegistry, generate_latest, multiprocess

            def theirs() -> str:
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
                return generate_latest(registry).decode()

            their_seconds, their_lines = timed(theirs, repeats)
        finally:
            stop_writers(writers)
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    rows.append(
        ["agentic-backend (WorkerSet merge + render)", f"{ours_seconds * 1000:.1f}", str(ours_lines), ""]
    )
    rows.append(
        [
            "prometheus_client multiprocess",
            f"{their_seconds * 1000:.1f}",
            str(their_lines),
            f"{their_seconds / ours_seconds:.1f}x slower",
        ]
    )
    return rows


def start_service(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "AGENTIC_METRICS_MULTIPROCESS_DIR": str(folder / "metrics"),
        "AGENTIC_DATA_DIR": str(folder / "data"),
        "AGENTIC_ADMIN_API_KEY": "bench-admin-key-" + "k" * 40,
        "AGENTIC_METRICS_MAX_SERIES_PER_METRIC": "100000",
        "BENCH_SERIES": str(SERIES),
    }
    (folder / "metrics").mkdir()
    # As `serve` does: migrate and make the first key once, before the workers start (four workers
    # migrating one new SQLite file at once would race).
    subprocess.run(
        [sys.executable, "-m", "agentic_backend", "keys", "create", "--name", "bench", "--role", "admin"],
        env=env,
        check=True,
        capture_output=True,
    )
    env["AGENTIC_MIGRATE_ON_START"] = "false"
    args = [sys.executable, "-m", "uvicorn", "--factory", "bench.apps:populated", "--port", str(port)]
    args += ["--workers", str(WORKERS), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(args, env=env, cwd=Path(__file__).parent.parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"{url}/api/v1/monitoring/metrics", timeout=10).text
            if text.count("/bench/") >= SERIES * 1:  # every worker started and wrote its series
                time.sleep(2)
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the service did not start")


class Poller:
    """GETs one path once a second over one keep-alive connection, as lean as a client can be (a raw
    socket, the request prebuilt, the answer read raw and not decompressed): an httpx client in this
    process cost the loaded 2-core machine enough CPU that polling even ``GET /`` once a second moved
    the p99 of wrk's requests by 40 %. Prometheus scrapes from elsewhere."""

    def __init__(self, url: str, path: str) -> None:
        parsed = httpx.URL(url)
        self._address = (parsed.host, parsed.port or 80)
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {parsed.host}\r\n"
            "Accept: application/openmetrics-text\r\nAccept-Encoding: gzip\r\n\r\n"
        ).encode()
        self.milliseconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with socket.create_connection(self._address) as connection:
            while not self._stop.wait(1.0):
                started = time.perf_counter()
                connection.sendall(self._request)
                self._read_answer(connection)
                self.milliseconds.append((time.perf_counter() - started) * 1000)

    @staticmethod
    def _read_answer(connection: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length is not None:  # a JSON route
            while len(body) < int(length.group(1)):
                body += connection.recv(65536)
            return
        while not body.endswith(b"0\r\n\r\n"):  # the streamed exposition: chunked to its last chunk
            body += connection.recv(65536)


MODES = {
    "no polling": None,
    "GET / once a second (the poller's own cost)": "/",
    "a scrape every second": "/api/v1/monitoring/metrics",
}


def latency(rounds: int, seconds: int, connections: int) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_service(Path(folder))
        wrk(f"{url}/", seconds=3, connections=connections)  # warm-up, not counted
        p99: dict[str, list[float]] = {mode: [] for mode in MODES}
        scrape_ms: list[float] = []
        try:
            for _ in range(rounds):
                for mode, path in MODES.items():  # alternate rows: the machine's noise hits all alike
                    if path is None:
                        result = wrk(f"{url}/", seconds=seconds, connections=connections)
                    else:
                        with Poller(url, path) as poller:
                            result = wrk(f"{url}/", seconds=seconds, connections=connections)
                        if path != "/":
                            scrape_ms += poller.milliseconds
                    p99[mode].append(result.p99_ms)
        finally:
            process.terminate()
            process.wait(timeout=30)
    base = statistics.median(p99["no polling"])
    rows = []
    for mode, values in p99.items():
        median = statistics.median(values)
        runs = " ".join(f"{v:.2f}" for v in values)
        rows.append([mode, f"{median:.3f}", f"{median / base:.2f}", runs])
    rows.append(["(scrape time, ms, median)", f"{statistics.median(scrape_ms):.1f}", "", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Scrape merge time and its effect on other requests.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=["time", "latency"])
    parser.add_argument(
        "--connections",
        type=int,
        default=2,
        help="wrk connections: 2 leaves the 4 workers headroom, as a service below saturation has; "
        "8 saturates both cores, where any extra CPU (a scrape's) shows in the tail",
    )
    args = parser.parse_args()
    if args.only != "latency":
        print(f"Scrape of {WORKERS} workers x {SERIES:,} series (target: ours >= 10x faster)\n")
        print(table(["exposition", "ms (median)", "lines", ""], scrape_time(args.repeats)), "\n")
    if args.only != "time":
        print("p99 of GET / under wrk, uvicorn --workers 4, 5,000 series per worker (target <= 1.10)\n")
        print(
            table(
                ["round", "p99 ms (median)", "vs no polling", "each round"],
                latency(args.rounds, args.seconds, args.connections),
            )
        )


if __name__ == "__main__":
    main()
