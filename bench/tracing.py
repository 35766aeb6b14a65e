"""What tracing costs per agent query: off (no OpenTelemetry variables), on (every span exported over
OTLP/HTTP to a receiver), and what the off path's no-op tracer calls cost by themselves.

    uv run python -m bench.tracing [--rounds 5] [--queries 300]

Each row builds the app as ``serve`` does (SQLite, ``sim`` at zero latency) and sends ``--queries``
calculator queries (two model calls and a tool call each, every text new so the cache never answers)
through the ASGI interface in-process, measuring the process's CPU time per query (the exporter's thread
included). Rows alternate (off, on, off, on, ...); medians. The last row times, with ``timeit``, the
tracer calls a query makes when tracing is off (an agent span, two model-call spans, a tool span, their
attributes and context switches): what the off path pays for having tracing at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NoOpTracer

from bench.common import median, table

# The receiver runs in a process of its own: decoding the spans is the collector's cost, not ours.
RECEIVER = """
import sys, time
from tests.integration.otlp import OtlpReceiver
receiver = OtlpReceiver()
print(receiver.url, flush=True)
sys.stdin.read()
print(len(receiver.spans), flush=True)
"""

ADMIN_KEY = "bench-admin-key-0123456789-abcdefghijklmnop"
OTEL = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_BSP_SCHEDULE_DELAY")


async def cpu_per_query(folder: Path, queries: int, endpoint: str | None, round_: int) -> float:
    from agentic_backend.app import create_app
    from agentic_backend.core.config import Settings

    for name in OTEL:
        os.environ.pop(name, None)
    if endpoint is not None:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    data = folder / f"{'on' if endpoint else 'off'}-{round_}"
    app = create_app(Settings(data_dir=data, admin_api_key=ADMIN_KEY, gc_freeze=False))
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client,
    ):
        for n in range(20):  # warm-up
            await client.post("/api/v1/agents/calculator/query", json={"query": f"warm {n}: 1+{n}?"})
        started = time.process_time()
        for n in range(queries):
            response = await client.post(
                "/api/v1/agents/calculator/query", json={"query": f"round {round_} #{n}: what is {n}*7?"}
            )
            assert response.status_code == 200, response.text
        spent = time.process_time() - started
    return spent / queries * 1e6


def noop_calls_microseconds() -> float:
    tracer = NoOpTracer()

    def one_query() -> None:
        span = tracer.start_span("invoke_agent calculator", attributes={"gen_ai.operation.name": "x"})
        token = otel_context.attach(trace.set_span_in_context(span))
        for _ in range(2):
            call = tracer.start_span("chat gpt-4o-mini", attributes={"gen_ai.request.model": "m"})
            call.set_attributes({"gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 2})
            call.end()
        with tracer.start_as_current_span("execute_tool calculate", attributes={"gen_ai.tool.name": "c"}):
            pass
        span.set_attributes({"gen_ai.usage.output_tokens": 3})
        span.end()
        otel_context.detach(token)

    runs = 20_000
    return min(timeit.repeat(one_query, number=runs, repeat=5)) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert receiver.stdout is not None
    url = receiver.stdout.readline().strip()
    off: list[float] = []
    on: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for round_ in range(args.rounds):
                off.append(asyncio.run(cpu_per_query(Path(folder), args.queries, None, round_)))
                on.append(asyncio.run(cpu_per_query(Path(folder), args.queries, url, round_)))
    finally:
        received, _ = receiver.communicate("", timeout=30)
    base = median(off)
    noop = noop_calls_microseconds()
    print(f"CPU per calculator query (2 model calls, 1 tool call), {args.queries} queries x {args.rounds}\n")
    print(
        table(
            ["tracing", "us per query (median)", "vs off", "each round"],
            [
                ["off (no OTEL_* variables)", f"{base:.0f}", "1.00", " ".join(f"{v:.0f}" for v in off)],
                [
                    "on (every span exported)",
                    f"{median(on):.0f}",
                    f"{median(on) / base:.2f}",
                    " ".join(f"{v:.0f}" for v in on),
                ],
                [
                    "off: its no-op tracer calls alone",
                    f"{noop:.2f}",
                    f"{noop / base:.4f}",
                    "timeit, best of 5",
                ],
            ],
        )
    )
    print(f"\nspans received: {received.strip()}")


if __name__ == "__main__":
    main()
