"""Rendering /metrics: our exposition vs prometheus_client.generate_latest, and what scrapes cost others.

    uv run python -m bench.exposition [--rounds 7]

1. Render time at 5,000 and 50,000 series (exposition lines) of the same content in both registries:
   60 % counter lines with three labels, 40 % histogram lines (14 buckets, two labels). Rows alternate
   (ours, theirs, ours, ...); medians.
2. p99 latency of other requests (GET /, a small JSON route) while /metrics of a 50,000-series registry is scraped every second, vs
   the same load without scrapes: the service on core 0, wrk (16 connections) and the scraper on core 1,
   rows alternating.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import httpx
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from agentic_backend.core.config import Settings
from agentic_backend.metricstore.exposition import render
from agentic_backend.monitoring.catalogue import HTTP_DURATION_BUCKETS
from agentic_backend.monitoring.service import Telemetry
from bench.common import CLIENT_CPU, median, start_uvicorn, table, wrk

ADMIN_KEY = "bench-admin-key-0123456789-abcdefghijklmnop"
HISTOGRAM_LINES = len(HTTP_DURATION_BUCKETS) + 3  # buckets, +Inf, _sum, _count


def build(series: int) -> tuple[Telemetry, CollectorRegistry]:
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series in either
    ours = Telemetry(Settings(metrics_max_series_per_metric=10 * series))
    theirs = CollectorRegistry()
    counter = Counter("http_requests_total", "Requests.", ["method", "endpoint", "status"], registry=theirs)
    histogram = Histogram(
        "http_request_duration_seconds",
        "Latency.",
        ["method", "endpoint"],
        buckets=HTTP_DURATION_BUCKETS,
        registry=theirs,
    )
    for i in range(int(series * 0.6)):
        labels = ("GET", f"/api/v1/resource/{i}", "200")
        counter.labels(*labels).inc(i)
        ours.metrics.http_requests.labels(*labels).inc(i)
    for i in range(int(series * 0.4) // HISTOGRAM_LINES):
        route = ("POST", f"/api/v1/resource/{i}")
        histogram.labels(*route).observe(i / 1000)
        ours.metrics.http_duration.labels(*route).observe(i / 1000)
    return ours, theirs


def render_times(series: int, rounds: int) -> tuple[float, float, int]:
    ours, theirs = build(series)
    lines = render(ours.snapshot()).count("\n")
    our_times, their_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        render(ours.snapshot()).encode()
        our_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        generate_latest(theirs)
        their_times.append(time.perf_counter() - start)
    return median(our_times), median(their_times), lines


def scrape_impact(rounds: int, seconds: int) -> list[tuple[float, float]]:
    env = {
        "AGENTIC_DATA_DIR": tempfile.mkdtemp(prefix="bench-exposition-"),
        "AGENTIC_ADMIN_API_KEY": ADMIN_KEY,
        "AGENTIC_CUSTOM_METRICS_MAX_SERIES_TOTAL": "100000",
        "AGENTIC_CUSTOM_METRICS_MAX_SERIES_PER_METRIC": "100000",
    }
    server = start_uvicorn(
        "service", "agentic_backend.app:create_app", env=env, probe="/api/v1/monitoring/health"
    )
    results: list[tuple[float, float]] = []
    try:
        with httpx.Client(
            base_url=server.url, timeout=30, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ) as client:
            for batch in range(50):
                records = [
                    {
                        "metric_type": "counter",
                        "name": "bench_events_total",
                        "value": 1,
                        "labels": {"id": str(batch * 1000 + i)},
                    }
                    for i in range(1000)
                ]
                client.post("/api/v1/monitoring/record", json=records).raise_for_status()
            size = len(
                client.get(
                    "/api/v1/monitoring/metrics", headers={"accept-encoding": "identity"}
                ).text.splitlines()
            )
            print(f"registry: {size} exposition lines")
        url = server.url + "/"  # a route that touches no database: what the event loop's stalls alone cost
        wrk(url, seconds=2)
        for round_ in range(rounds):
            quiet = wrk(url, seconds=seconds).p99_ms
            stop = threading.Event()
            scrape_ms: list[float] = []

            def scrape(stop: threading.Event = stop, scrape_ms: list[float] = scrape_ms) -> None:
                with httpx.Client(base_url=server.url, timeout=30) as scraper:
                    while not stop.is_set():
                        start = time.perf_counter()
                        # What Prometheus asks for: OpenMetrics, gzip.
                        scraper.get(
                            "/api/v1/monitoring/metrics",
                            headers={
                                "accept": "application/openmetrics-text;version=1.0.0",
                                "accept-encoding": "gzip",
                            },
                        ).raise_for_status()
                        scrape_ms.append((time.perf_counter() - start) * 1000)
                        stop.wait(1.0)

            thread = threading.Thread(target=scrape)
            thread.start()
            busy = wrk(url, seconds=seconds).p99_ms
            stop.set()
            thread.join()
            results.append((quiet, busy))
            print(
                f"round {round_ + 1}/{rounds}: p99 {quiet:.2f} ms quiet, {busy:.2f} ms with {len(scrape_ms)} scrapes of median {median(scrape_ms):.0f} ms",
                flush=True,
            )
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip-render", action="store_true", help="only the scrape-impact part")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})

    if not args.skip_render:
        rows = []
        for series in (5_000, 50_000):
            ours, theirs, lines = render_times(series, args.rounds)
            rows.append([f"{lines:,}", f"{ours * 1000:.1f}", f"{theirs * 1000:.1f}", f"{theirs / ours:.1f}x"])
        print(f"Render time, medians of {args.rounds} alternating runs")
        print(table(["series", "ours ms", "generate_latest ms", "speed-up"], rows))
        print()

    impact = scrape_impact(args.rounds, args.seconds)
    quiet = median([q for q, _ in impact])
    busy = median([b for _, b in impact])
    print()
    print(f"p99 of GET / (wrk -c16, {args.seconds} s), 50,000-series /metrics scraped every second, medians")
    print(
        table(
            ["load", "p99 ms", "vs quiet"],
            [
                ["no scrapes", f"{quiet:.2f}", "100 %"],
                ["scrapes", f"{busy:.2f}", f"{busy / quiet * 100:.0f} %"],
            ],
        )
    )


if __name__ == "__main__":
    main()
