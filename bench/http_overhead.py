"""Throughput of one small JSON route: bare FastAPI vs ours vs the two best-known peers.

    uv run python -m bench.http_overhead [--rounds 7] [--seconds 5]

Every app runs under the same uvicorn flags on core 0; wrk (1 thread, 16 connections) runs on core 1. Each
round starts every server afresh (a process's speed varies with its random hash seed and memory layout,
so each round draws anew), then pairs bare FastAPI with every other row (bare, ours, bare,
instrumentator, ...; the order within a pair flips each round), so each row's ratio compares two runs
seconds apart and drift on this noisy 2-core machine cancels out. Besides requests/s it reads the server
process's CPU time per request from /proc, which is steadier. Reported: the median requests/s and the median of the paired ratios.
"""

from __future__ import annotations

import argparse

from bench.common import Server, measure, median, start_uvicorn, table, wrk

BARE = "bare FastAPI"
ROWS = {
    BARE: "bench.apps:bare",
    "agentic-backend": "bench.apps:ours",
    "prometheus-fastapi-instrumentator 8.1": "bench.apps:instrumentator",
    "starlette-exporter 0.24": "bench.apps:starlette_exporter",
    "naive prometheus_client middleware": "bench.apps:naive",
    "do-nothing middleware (floor)": "bench.apps:passthrough",
    "send-wrapping middleware (floor for a status)": "bench.apps:send_wrapper_only",
}
PATH = "/items/42"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=[], help="rows to compare with bare (substrings)")
    args = parser.parse_args()

    selected = {n: t for n, t in ROWS.items() if n == BARE or not args.only or any(o in n for o in args.only)}
    rps: dict[str, list[float]] = {name: [] for name in selected}
    ratios: dict[str, list[float]] = {name: [] for name in selected}
    p99: dict[str, list[float]] = {name: [] for name in selected}
    cpu: dict[str, list[float]] = {name: [] for name in selected}
    cpu_ratios: dict[str, list[float]] = {name: [] for name in selected}
    servers: dict[str, Server] = {}
    try:
        for round_ in range(args.rounds):
            # Fresh server processes every round: a process's hash seed and memory layout are random and
            # shift its speed by a percent or two for its whole life, so one process per row for the whole
            # run measured that luck as overhead (a send-wrapping middleware came out faster than bare).
            for server in servers.values():
                server.stop()
            servers = {name: start_uvicorn(name, target, probe=PATH) for name, target in selected.items()}
            for server in servers.values():  # warm up: first requests pay for imports and caches
                wrk(server.url + PATH, seconds=1)
            for name, server in servers.items():
                if name == BARE:
                    continue
                # A B in even rounds, B A in odd ones: whatever favours the first (or second) run of a pair
                # favours each side equally often.
                if round_ % 2 == 0:
                    bare, bare_cpu = measure(servers[BARE], servers[BARE].url + PATH, seconds=args.seconds)
                    other, other_cpu = measure(server, server.url + PATH, seconds=args.seconds)
                else:
                    other, other_cpu = measure(server, server.url + PATH, seconds=args.seconds)
                    bare, bare_cpu = measure(servers[BARE], servers[BARE].url + PATH, seconds=args.seconds)
                cpu[BARE].append(bare_cpu)
                cpu[name].append(other_cpu)
                cpu_ratios[name].append(bare_cpu / other_cpu)
                rps[BARE].append(bare.requests_per_second)
                p99[BARE].append(bare.p99_ms)
                rps[name].append(other.requests_per_second)
                p99[name].append(other.p99_ms)
                ratios[name].append(other.requests_per_second / bare.requests_per_second)
            print(
                f"round {round_ + 1}/{args.rounds}: "
                + ", ".join(f"{n.split()[0]} {ratios[n][-1]:.3f}" for n in selected if n != BARE),
                flush=True,
            )
    finally:
        for server in servers.values():
            server.stop()

    rows = [
        [
            BARE,
            f"{median(rps[BARE]):.0f}",
            "100.0 %",
            f"{median(cpu[BARE]):.1f}",
            "100.0 %",
            f"{median(p99[BARE]):.2f}",
        ]
    ]
    for name in selected:
        if name != BARE:
            rows.append(
                [
                    name,
                    f"{median(rps[name]):.0f}",
                    f"{median(ratios[name]) * 100:.1f} %",
                    f"{median(cpu[name]):.1f}",
                    f"{median(cpu_ratios[name]) * 100:.1f} %",
                    f"{median(p99[name]):.2f}",
                ]
            )
    print()
    print(
        f"GET {PATH}, wrk -t1 -c16 -d{args.seconds}s, medians of {args.rounds} rounds (ratio: median of paired runs)"
    )
    print(table(["app", "requests/s", "vs bare", "CPU us/req", "CPU vs bare", "p99 ms"], rows))
    print(
        "(CPU vs bare: bare's server CPU per request over this one's, i.e. relative throughput per CPU second)"
    )


if __name__ == "__main__":
    main()
