"""Memory and scrape size under hostile input, in bytes, against the stated budgets.

Part 1, custom metrics: a fresh service per shape fills every cap /record allows with the largest
series of that shape (10 labels of 1,024 characters; 64 buckets for histograms; or as many small series
as the series caps allow), then reports the service's RSS growth and the size of /metrics in both
formats. Targets at the defaults (AGENTIC_CUSTOM_METRICS_MAX_BYTES = 16 MiB): RSS growth <= 64 MB and
exposition <= 32 MB.

Part 2, labels from the outside: a million distinct attacker-chosen values (``--values``) through every
input that reaches a label, driven in-process through the ASGI app: request paths, HTTP methods and agent
type names. Model names a provider returns and key names never become label values (the model label is
the agent type's configured model; keys are never labels), so they need no bound. Target: RSS growth
<= 50 MB, series bounded, overflow counted.

    uv run python -m bench.hostile_memory              # both parts, the defaults
    uv run python -m bench.hostile_memory --values 100000 --only labels
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import string
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Message

from bench.common import free_port, proc_status

ADMIN = "bench-admin-key-" + "k" * 40
MB = 1_000_000


def rss_bytes(pid: int) -> int:
    rss = proc_status(pid).get("VmRSS")
    if rss is None:
        raise RuntimeError("no VmRSS")
    return int(rss.split()[0]) * 1024


def start_service(folder: Path) -> tuple[Any, str]:
    import subprocess

    port = free_port()
    env = {**os.environ, "AGENTIC_DATA_DIR": str(folder), "AGENTIC_ADMIN_API_KEY": ADMIN}
    args = [sys.executable, "-m", "agentic_backend", "serve", "--port", str(port), "--no-access-log"]
    process = subprocess.Popen([*args, "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/monitoring/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the service did not start")


def wide_labels(i: int) -> dict[str, str]:
    return {f"label_{n}": f"{i:08d}" + "x" * 1016 for n in range(10)}


SHAPES: dict[str, Any] = {
    "widest histograms (10 x 1 KiB labels, 64 buckets)": lambda i: {
        "metric_type": "histogram",
        "name": f"wide_{i // 1000}_seconds",
        "value": 1.0,
        "labels": wide_labels(i),
        "buckets": [float(b) for b in range(1, 65)],
    },
    "widest gauges (10 x 1 KiB labels)": lambda i: {
        "metric_type": "gauge",
        "name": f"wide_{i // 1000}_level",
        "value": 1.0,
        "labels": wide_labels(i),
    },
    "smallest series, up to the series caps": lambda i: {
        "metric_type": "counter",
        "name": f"small_{i // 1000}_total",
        "value": 1.0,
        "labels": {"i": str(i % 1000)},
    },
}


def fill(url: str, shape: Any) -> tuple[int, str]:
    """Record series of ``shape`` until the service refuses one for a cap; (accepted, the refusal)."""
    headers = {"authorization": f"Bearer {ADMIN}"}
    accepted = 0
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for i in range(1_000_000):
            response = client.post("/api/v1/monitoring/record", json=shape(i))
            if response.status_code != 200:
                detail: str = response.json()["detail"]
                return accepted, f"{response.status_code}: {detail[:90]}"
            accepted += 1
    return accepted, "never refused"


def python_heap(shape: Any) -> int:
    """Bytes the same fill holds in Python's heap, traced in-process: RSS growth can hide memory a
    process had freed before (and reuses), this cannot."""
    import tracemalloc

    from agentic_backend.core.config import Settings
    from agentic_backend.core.errors import AppError
    from agentic_backend.monitoring.schemas import parse_record
    from agentic_backend.monitoring.service import Telemetry

    telemetry = Telemetry(Settings())
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(1_000_000):
            try:
                telemetry.custom.record([parse_record(shape(i))])
            except AppError:
                break
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held


def custom_part() -> list[list[str]]:
    rows = []
    for name, shape in SHAPES.items():
        with tempfile.TemporaryDirectory() as folder:
            process, url = start_service(Path(folder))
            try:
                for _ in range(3):  # warm: the first scrapes build what every scrape reuses
                    httpx.get(f"{url}/api/v1/monitoring/metrics", timeout=60)
                before = rss_bytes(process.pid)
                accepted, refusal = fill(url, shape)
                text = httpx.get(f"{url}/api/v1/monitoring/metrics", timeout=120)
                om = httpx.get(
                    f"{url}/api/v1/monitoring/metrics",
                    headers={"accept": "application/openmetrics-text"},
                    timeout=120,
                )
                growth = rss_bytes(process.pid) - before
            finally:
                process.terminate()
                process.wait(timeout=30)
        size = max(len(text.content), len(om.content))
        heap = python_heap(shape)
        verdict = "ok" if max(growth, heap) <= 64 * MB and size <= 32 * MB else "OVER"
        row = [name, str(accepted), f"{growth / MB:.1f}", f"{heap / MB:.1f}", f"{size / MB:.1f}", verdict]
        rows.append([*row, refusal])
    return rows


async def labels_part(values: int) -> list[list[str]]:
    from agentic_backend import state
    from agentic_backend.app import create_app
    from agentic_backend.core.config import Settings
    from agentic_backend.metricstore.exposition import render

    folder = tempfile.mkdtemp()
    app = create_app(Settings(data_dir=Path(folder), admin_api_key=ADMIN, gc_freeze=False))
    auth = [(b"authorization", f"Bearer {ADMIN}".encode()), (b"content-type", b"application/json")]
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits + "-_.~%"

    def word(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    async def call(
        method: str, path: str, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(_: Message) -> None:
            return None

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers or [], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        await app(scope, receive, send)

    inputs: dict[str, Callable[[int], Awaitable[None]]] = {
        "request paths": lambda i: call("GET", f"/{word(12)}/{i}"),
        "HTTP methods": lambda i: call(word(8).upper(), "/api/v1/monitoring/health"),
        "agent type names": lambda i: call(
            "POST", f"/api/v1/agents/{word(10)}{i}/query", b'{"query": "hi"}', auth
        ),
    }
    rows = []
    async with app.router.lifespan_context(app):
        telemetry = state.of(app).telemetry
        gc.collect()
        for name, send_one in inputs.items():
            before = rss_bytes(os.getpid())
            series_before = telemetry.registry.series_count()
            started = time.perf_counter()
            for i in range(values // len(inputs)):
                await send_one(i)
            gc.collect()
            growth = rss_bytes(os.getpid()) - before
            series = telemetry.registry.series_count() - series_before
            text = render(telemetry.snapshot())
            overflow = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("agentic_backend_metric_series_overflow_total{")
            )
            verdict = "ok" if growth <= 50 * MB else "OVER"
            seconds = time.perf_counter() - started
            rows.append(
                [
                    name,
                    str(values // len(inputs)),
                    f"{growth / MB:.1f}",
                    str(series),
                    f"{overflow:.0f}",
                    verdict,
                    f"{seconds:.0f}",
                ]
            )
    return rows


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description="Memory and scrape size under hostile input.")
    parser.add_argument("--values", type=int, default=1_000_000, help="attacker-chosen values in part 2")
    parser.add_argument("--only", choices=["custom", "labels"], help="run one part")
    args = parser.parse_args()
    if args.only != "labels":
        print("Custom metrics filled to their caps (targets: RSS growth <= 64 MB, exposition <= 32 MB)\n")
        header = ["shape", "series", "RSS growth MB", "Python heap MB", "/metrics MB", "", "stopped by"]
        table(header, custom_part())
    if args.only != "custom":
        print(f"{args.values:,} attacker-chosen label values (target: RSS growth <= 50 MB, series bounded)\n")
        header = ["input", "values", "RSS growth MB", "new series", "overflowed", "", "seconds"]
        table(header, asyncio.run(labels_part(args.values)))


if __name__ == "__main__":
    main()
