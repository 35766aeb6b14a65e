"""What one provider call's HTTP costs the service: aiohttp's ``ClientSession.post`` (what the unstreamed
OpenAI call used until session 32) against the service's own HTTP/1.1 client (llm/http1.py).

    uv run python -m bench.http_client [--rounds 5] [--calls 3000]

``sim-llm`` answers on core 1; this process, on core 0, sends ``--calls`` chat-completion POSTs one after
the other on one kept-alive connection with each client, alternating the clients round by round, and
reads each answer as JSON, as the provider does. Reported: CPU microseconds a call (this process's, so
the server's work is not in it) and wall microseconds a call, medians of the rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import uvloop

from agentic_backend.llm.http1 import Http1Client
from bench.common import CLIENT_CPU, SERVER_CPU, free_port, median, table

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 256}
).encode()
HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}


async def with_aiohttp(url: str, calls: int) -> None:
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=4)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:
        per_try = aiohttp.ClientTimeout(total=60)
        for _ in range(calls):
            async with session.post(url, data=BODY, timeout=per_try, proxy=None) as response:
                json.loads(await response.read())


async def with_http1(url: str, calls: int) -> None:
    client = Http1Client(url, HEADERS)
    for _ in range(calls):
        json.loads((await client.post(BODY, 60)).body)
    await client.close()


def timed(run: Callable[[str, int], Awaitable[None]], url: str, calls: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    uvloop.run(run(url, calls))  # type: ignore[arg-type]
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(SERVER_CPU)})
    port = free_port()
    upstream = subprocess.Popen(
        [
            "taskset",
            "-c",
            CLIENT_CPU,
            sys.executable,
            "-m",
            "agentic_backend",
            "sim-llm",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    clients = {"aiohttp ClientSession.post": with_aiohttp, "llm/http1.py Http1Client.post": with_http1}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        for run in clients.values():  # warm up
            timed(run, url, 300)
        for round_ in range(args.rounds):
            order = list(clients.items())
            for name, run in order if round_ % 2 == 0 else reversed(order):
                results[name].append(timed(run, url, args.calls))
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    finally:
        os.killpg(upstream.pid, signal.SIGTERM)
        upstream.wait(timeout=30)
    base = median([cpu for cpu, _ in results["aiohttp ClientSession.post"]])
    rows = []
    for name, rounds in results.items():
        cpu, wall = median([c for c, _ in rounds]), median([w for _, w in rounds])
        rows.append([name, f"{cpu:.1f}", f"{wall:.1f}", f"{cpu / base:.2f}x"])
    print()
    print(table(["client", "CPU µs a call", "wall µs a call", "CPU vs aiohttp"], rows))


if __name__ == "__main__":
    main()
