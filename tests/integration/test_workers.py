"""``serve --workers N``: one scrape reports the sum over all workers, through worker restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers import value
from tests.integration.harness import Service, children, wait_until

pytestmark = pytest.mark.integration


def request_count(text: str) -> float:
    return (
        value(text, "http_requests_total", method="GET", endpoint="/api/v1/monitoring/health", status="200")
        or 0.0
    )


def test_requests_spread_over_four_workers_sum_in_one_scrape(tmp_path: Path) -> None:
    # The user points the folder at one that holds their own files: serve works in a run folder of its
    # own inside it, and deletes nothing else, at start or at exit.
    chosen = tmp_path / "metrics"
    chosen.mkdir()
    (chosen / "precious.db").write_text("the user's data")
    (chosen / "agentic-metrics-not-ours").mkdir()  # named like a run folder, but without the mark
    service = Service(tmp_path, workers=4, env={"AGENTIC_METRICS_MULTIPROCESS_DIR": str(chosen)})
    try:
        wait_until(lambda: len(children(service.popen.pid)) == 4, timeout=30, what="four workers")
        (folder,) = (p for p in chosen.glob("agentic-metrics-*") if (p / ".agentic-backend-run").exists())
        metrics_url = f"{service.url}/api/v1/monitoring/metrics"
        baseline = request_count(httpx.get(metrics_url, timeout=5).text)
        count = 200
        # A new connection per request lets the kernel spread them over the workers' shared socket.
        for _ in range(count):
            assert httpx.get(f"{service.url}/api/v1/monitoring/health", timeout=5).status_code == 200
        # Every worker has a journal from start-up. A worker that served a /health request journaled that
        # series: more than one did (the kernel picks the worker that accepts, so not necessarily all four).
        journals = list(folder.glob("w-*.journal"))
        assert len(journals) == 4
        served = [j for j in journals if '"/api/v1/monitoring/health","200"' in j.read_text()]
        assert len(served) >= 2
        # Whichever worker answers the scrape, it reports all of them.
        for _ in range(8):
            assert request_count(httpx.get(metrics_url, timeout=5).text) == baseline + count
        # The summary merges the workers as a scrape does, yielding to the loop between them (a merge of
        # every worker at once in a coroutine is refused: it held the loop 10-70 ms, issue 19).
        for _ in range(8):
            answer = httpx.get(f"{service.url}/api/v1/monitoring/summary", headers=service.headers, timeout=5)
            assert answer.status_code == 200, answer.text
            assert answer.json()["workers"] == "multiprocess"
            assert answer.json()["http"]["requests_total"] >= baseline + count

        # Kill a worker outright; the supervisor starts another. Nothing counted is lost, and the folder
        # does not keep the dead worker's files.
        for round_ in range(3):
            victim = children(service.popen.pid)[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(
                lambda v=victim: (
                    v not in children(service.popen.pid) and len(children(service.popen.pid)) == 4
                ),
                timeout=30,
                what="the supervisor to replace the killed worker",
            )
            text = wait_until(lambda: httpx.get(metrics_url, timeout=5).text, timeout=10, what="a scrape")
            assert request_count(text) == baseline + count
            assert value(text, "active_requests") == 1  # the scrape itself, in whichever worker
            # Four live workers, plus at most the new worker's predecessor if no scrape has archived it yet.
            assert len(list(folder.glob("w-*.journal"))) <= 5, round_
    finally:
        service.stop()
    assert (chosen / "precious.db").read_text() == "the user's data"
    assert (chosen / "agentic-metrics-not-ours").is_dir()
    assert not folder.exists(), "the run folder serve made is removed at exit"
