"""The metrics folder's disk full, for real: a worker process whose files may not grow (RLIMIT_FSIZE, the
kernel's EFBIG, what ENOSPC does on a full disk or tmpfs) keeps answering. A new series that cannot be
stored goes uncounted instead of failing the request it measures (or, as a sparse page would, killing the
worker with SIGBUS at its first write); a journal line the disk cut short is skipped by every reader, and
once the disk has room again new series are journaled and scraped as before."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from pathlib import Path
    from types import SimpleNamespace
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    from agentic_backend.core.config import Settings
    from agentic_backend.metricstore.exposition import render
    from agentic_backend.monitoring.middleware import HttpMetricsMiddleware
    from agentic_backend.monitoring.service import Telemetry

    folder = Path(sys.argv[1])
    telemetry = Telemetry(Settings(metrics_multiprocess_dir=folder, metrics_max_series_per_metric=100_000))

    async def answer(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def sent(message):
        pass

    middleware = HttpMetricsMiddleware(answer, telemetry.metrics)  # its hot path caches series' slots

    def serve(template):
        scope = {"type": "http", "method": "GET", "route": SimpleNamespace(path_format=template)}
        asyncio.run(middleware(scope, None, sent))
    requests = telemetry.metrics.http_requests
    requests.labels("GET", "/before", "200").inc(3)
    (journal,) = folder.glob("*.journal")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Room for a few more journal lines, then a line cut short; no room for a new 32 KiB page.
    resource.setrlimit(resource.RLIMIT_FSIZE, (journal.stat().st_size + 300, hard))
    raised = None
    try:
        for i in range(6000):  # more series than the first page holds
            requests.labels("GET", f"/during/{i}", "200").inc()
        serve("/served")  # a request whose label set storage cannot take now
    except Exception as exc:
        raised = repr(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    serve("/served")  # with room again: stored and counted, not left uncounted by a cache
    for i in range(10):
        requests.labels("GET", f"/after/{i}", "200").inc(7)
    text = render(telemetry.snapshot(), openmetrics=True)
    list(text_string_to_metric_families(text))  # strict: the exposition stays valid
    lines = journal.read_bytes().split(b"\\n")

    # A custom batch on a full disk: refused whole (the service answers 503), no value moved.
    from agentic_backend.monitoring.schemas import parse_record
    telemetry.custom.record([parse_record({"metric_type": "counter", "name": "jobs_total", "value": 1})])
    batch = [
        parse_record({"metric_type": "counter", "name": "jobs_total", "value": 5}),
        parse_record({"metric_type": "gauge", "name": "depth", "value": 3, "labels": {"q": "a"}}),
    ]
    custom_journal = folder / "custom.journal"
    resource.setrlimit(resource.RLIMIT_FSIZE, (custom_journal.stat().st_size, hard))
    try:
        telemetry.custom.record(batch)
        custom_refused = None
    except OSError as exc:
        custom_refused = exc.errno
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    during_full = render(telemetry.snapshot())
    telemetry.custom.record(batch)
    after_room = render(telemetry.snapshot())
    print(json.dumps({
        "raised": raised,
        "before": 'endpoint="/before",status="200"} 3.0' in text,
        "after": sum(f'endpoint="/after/{i}",status="200"}} 7.0' in text for i in range(10)),
        "during": sum('endpoint="/during/' in line for line in text.splitlines()),
        "served": 'http_requests_total{method="GET",endpoint="/served",status="200"} 1.0' in text,
        "custom_refused": custom_refused,
        "custom_during": ["jobs_total 1.0" in during_full, "depth{" in during_full],
        "custom_after": ["jobs_total 6.0" in after_room, 'depth{q="a"} 3.0' in after_room],
        "unparsable_journal_lines": sum(1 for line in lines if line and not line.startswith(b"{")
                                        or (line.startswith(b"{") and not line.endswith(b"}"))),
    }))
    """
)


def test_a_full_disk_neither_fails_requests_nor_corrupts_the_journal(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)
    assert result["raised"] is None  # no request would have failed
    assert result["before"]
    assert result["unparsable_journal_lines"] == 1  # the line the disk cut short, skipped
    assert 0 < result["during"] < 6000  # those journaled before the disk filled are counted
    assert result["after"] == 10  # with room again, new series are stored and scraped
    assert result["served"]  # through the HTTP middleware too: the request after, not the one during
    assert "could not store a new series" in done.stderr
    assert result["custom_refused"] == errno.EFBIG  # a storage failure: the service's 503
    assert result["custom_during"] == [True, False]  # the batch moved nothing, not even its first record
    assert result["custom_after"] == [True, True]
