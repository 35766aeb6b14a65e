"""Several real processes sharing one metrics folder, as with ``serve --workers N``."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from agentic_backend.core.config import Settings
from agentic_backend.metricstore.exposition import render
from agentic_backend.monitoring.errors import MetricConflict
from agentic_backend.monitoring.schemas import parse_record
from agentic_backend.monitoring.service import Telemetry
from tests.helpers import value

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agentic_backend.core.config import Settings
    from agentic_backend.monitoring.schemas import parse_record
    from agentic_backend.monitoring.service import Telemetry

    telemetry = Telemetry(Settings(metrics_multiprocess_dir=Path(sys.argv[1])))
    requests = int(sys.argv[2])
    if len(sys.argv) > 3 and sys.argv[3] == "redis":
        telemetry.share_between_workers("cache_size_bytes")
    telemetry.metrics.cache_size.labels().set(100)
    for _ in range(requests):
        telemetry.metrics.http_requests.labels("GET", "/x", "200").inc()
        telemetry.metrics.http_duration.labels("GET", "/x").observe(0.01)
    telemetry.metrics.active_requests.labels().set(5)
    telemetry.metrics.active_sessions.labels().set(3)  # stale: only the answering worker's count is used
    telemetry.custom.record([parse_record(dict(metric_type="counter", name="jobs_total", value=1, labels={}))])
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def start_worker(folder: Path, requests: int, cache: str = "memory") -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(folder), str(requests), cache],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.communicate("\n", timeout=10)  # also closes the pipes
    assert process.returncode == 0


def test_one_scrape_sums_live_workers_and_keeps_what_dead_workers_counted(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    scraper = Telemetry(Settings(metrics_multiprocess_dir=folder))
    workers = [start_worker(folder, n) for n in (3, 4, 5)]
    scraper.metrics.active_sessions.labels().set(7)  # counted afresh in the database by the answering worker
    text = render(scraper.snapshot())
    assert value(text, "http_requests_total", method="GET", endpoint="/x", status="200") == 12
    assert value(text, "http_request_duration_seconds_count", method="GET", endpoint="/x") == 12
    assert value(text, "active_requests") == 15  # each worker's own requests, summed
    assert value(text, "active_sessions") == 7  # not summed, and not a stale count of another worker
    assert value(text, "jobs_total") == 3  # custom metrics live in one shared store

    for process in workers:
        stop(process)
    text = render(scraper.snapshot())
    assert value(text, "http_requests_total", method="GET", endpoint="/x", status="200") == 12
    assert value(text, "http_request_duration_seconds_count", method="GET", endpoint="/x") == 12
    assert value(text, "active_requests") == 0
    assert value(text, "jobs_total") == 3
    scraper.close()


@pytest.mark.parametrize(("cache", "expected"), [("memory", 300.0), ("redis", 100.0)])
def test_cache_size_is_each_workers_own_summed_or_the_shared_one_once(
    tmp_path: Path, cache: str, expected: float
) -> None:
    # Three processes, each reporting 100 bytes: three memory caches of 100 bytes hold 300; one Redis
    # that each of them reads as 100 holds 100.
    folder = tmp_path / "metrics"
    scraper = Telemetry(Settings(metrics_multiprocess_dir=folder))
    if cache == "redis":
        scraper.share_between_workers("cache_size_bytes")
    scraper.metrics.cache_size.labels().set(100)
    workers = [start_worker(folder, 1, cache) for _ in range(2)]
    try:
        assert value(render(scraper.snapshot()), "cache_size_bytes") == expected
    finally:
        for process in workers:
            stop(process)
        scraper.close()


def test_restarted_workers_leave_nothing_that_grows(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    scraper = Telemetry(Settings(metrics_multiprocess_dir=folder))
    sizes = []
    for round_ in range(8):
        stop(start_worker(folder, 2))
        render(scraper.snapshot())
        files = sorted(p.name for p in folder.iterdir())
        archive = json.loads((folder / "archive.json").read_text())
        sizes.append((len(files), len(archive["series"]), len(archive["absorbed"])))
        text = render(scraper.snapshot())
        assert value(text, "http_requests_total", method="GET", endpoint="/x", status="200") == 2 * (
            round_ + 1
        )
    assert len(set(sizes)) == 1, sizes
    scraper.close()


def test_custom_metric_rules_hold_across_workers(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    first = Telemetry(Settings(metrics_multiprocess_dir=folder))
    second = Telemetry(Settings(metrics_multiprocess_dir=folder))
    first.custom.record([parse_record(dict(metric_type="gauge", name="depth", value=3, labels={"q": "a"}))])
    second.custom.record(
        [parse_record(dict(metric_type="gauge", name="depth", value=2, operation="inc", labels={"q": "a"}))]
    )
    assert value(render(first.snapshot()), "depth", q="a") == 5
    with pytest.raises(MetricConflict):
        second.custom.record(
            [parse_record(dict(metric_type="counter", name="depth_total", value=1, labels={}))]
        )
    with pytest.raises(MetricConflict):
        second.custom.record(
            [parse_record(dict(metric_type="histogram", name="depth", value=1, labels={"q": "a"}))]
        )
    first.close()
    second.close()


def test_concurrent_scrapes_while_workers_die_never_go_backwards(tmp_path: Path) -> None:
    # Two scrapers (an HA pair of Prometheus servers, each answered by another worker) read while workers
    # die and are archived by either of them: each one's view of a counter only ever grows, and both end
    # at the exact total.
    folder = tmp_path / "metrics"
    scrapers = [Telemetry(Settings(metrics_multiprocess_dir=folder)) for _ in range(2)]
    seen: list[list[float]] = [[], []]
    stop_event = threading.Event()

    def scrape(index: int) -> None:
        while not stop_event.is_set():
            text = render(scrapers[index].snapshot())
            seen[index].append(
                value(text, "http_requests_total", method="GET", endpoint="/x", status="200") or 0
            )

    threads = [threading.Thread(target=scrape, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    total = 0
    try:
        for requests in range(1, 13):
            worker = start_worker(folder, requests)
            total += requests
            worker.kill()  # SIGKILL: no clean exit, its files stay for a scrape to archive
            worker.wait(timeout=10)
            assert worker.stdin is not None
            worker.stdin.close()
            assert worker.stdout is not None
            worker.stdout.close()
    finally:
        stop_event.set()
        for thread in threads:
            thread.join(timeout=30)
    for index, values in enumerate(seen):
        assert values, index
        drops = [(a, b) for a, b in itertools.pairwise(values) if b < a]
        assert drops == [], f"scraper {index} saw the counter go back: {drops[:5]}"
        text = render(scrapers[index].snapshot())
        assert value(text, "http_requests_total", method="GET", endpoint="/x", status="200") == total
    for scraper in scrapers:
        scraper.close()
