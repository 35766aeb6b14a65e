"""Throughput of one small JSON route: bare FastAPI vs ours vs the two best-known peers.

    uv run python -m bench.http_overhead [--rounds 7] [--seconds 5]

Every app runs under the same uvicorn flags on core 0; wrk (1 thread, 16 connections) runs on core 1. All
servers are started first; then each round measures every row once, in an order that rotates each round
(A B C D, B C D A, ...), so drift on this noisy 2-core machine spreads over all rows. Reported: medians.
"""

from __future__ import annotations

import argparse

from bench.common import Server, median, start_uvicorn, table, wrk

ROWS = {
    "bare FastAPI": "bench.apps:bare",
    "agentic-backend": "bench.apps:ours",
    "prometheus-fastapi-instrumentator 8.1": "bench.apps:instrumentator",
    "starlette-exporter 0.24": "bench.apps:starlette_exporter",
    "naive prometheus_client middleware": "bench.apps:naive",
}
PATH = "/items/42"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()

    servers: list[Server] = [start_uvicorn(name, target, probe=PATH) for name, target in ROWS.items()]
    try:
        for server in servers:  # warm up: first requests pay for imports and caches
            wrk(server.url + PATH, seconds=1)
        results: dict[str, list[float]] = {s.name: [] for s in servers}
        p99: dict[str, list[float]] = {s.name: [] for s in servers}
        for round_ in range(args.rounds):
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for server in order:
                result = wrk(server.url + PATH, seconds=args.seconds)
                results[server.name].append(result.requests_per_second)
                p99[server.name].append(result.p99_ms)
            print(
                f"round {round_ + 1}/{args.rounds}: "
                + ", ".join(f"{s.name.split()[0]} {results[s.name][-1]:.0f}" for s in servers),
                flush=True,
            )
    finally:
        for server in servers:
            server.stop()

    bare = median(results["bare FastAPI"])
    rows = []
    for name in ROWS:
        rps = median(results[name])
        rows.append([name, f"{rps:.0f}", f"{rps / bare * 100:.1f} %", f"{median(p99[name]):.2f}"])
    print()
    print(f"GET {PATH}, wrk -t1 -c16 -d{args.seconds}s, medians of {args.rounds} rounds")
    print(table(["app", "requests/s", "vs bare", "p99 ms"], rows))


if __name__ == "__main__":
    main()
