"""Throughput of one small JSON route: bare FastAPI vs ours vs the two best-known peers.

    uv run python -m bench.http_overhead [--rounds 7] [--seconds 5]
    uv run python -m bench.http_overhead --together [--rounds 7] [--seconds 5]
    uv run python -m bench.http_overhead --instructions [--requests 4000]

Every app runs under the same uvicorn flags on core 0; wrk (1 thread, 16 connections) runs on core 1. Each
round starts every server afresh (a process's speed varies with its random hash seed and memory layout,
so each round draws anew), then pairs bare FastAPI with every other row (bare, ours, bare,
instrumentator, ...; the order within a pair flips each round), so each row's ratio compares two runs
seconds apart and drift on this noisy 2-core machine cancels out. Besides requests/s it reads the server
process's CPU time per request from /proc, which is steadier. Reported: the median requests/s and the median of the paired ratios.

``--together`` loads bare and the other row at the same time, both servers on the same core and two wrk
on the other: the scheduler gives each server the same CPU time, so the ratio of their requests/s is the
ratio of their costs per request, and a slowdown of the machine during the run (this one has noisy
neighbours) hits both alike instead of whichever ran second. Each then runs at about half its alone speed
and with the other's working set in the caches, so absolute requests/s are not comparable with the
alternating mode's.

``--instructions`` counts instead of timing: each server runs under valgrind's callgrind (PYTHONHASHSEED=0),
takes warm-up requests, has its counters zeroed, serves exactly ``--requests`` more, and the machine
instructions it executed are divided by that number. The count does not depend on what else the machine
is doing, but it does move from run to run by up to about 0.4 % (the same code counted 502.5k and 504.6k
per request: how the concurrent client's requests batch into event-loop iterations varies), so it settles
differences of a percent that timing on this machine blurs, not smaller ones; ``bench/asgi_instructions.py``
counts the app alone, exactly. Neither sees cache misses or branch mispredictions, which timing does.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from bench.common import (
    Server,
    callgrind_total,
    count_instructions,
    instructions_table,
    measure,
    measure_together,
    median,
    send_requests,
    start_uvicorn,
    table,
    wrk,
)

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
    parser.add_argument(
        "--together", action="store_true", help="load bare and the other row at once, sharing the server core"
    )
    parser.add_argument("--instructions", action="store_true", help="count instructions per request instead")
    parser.add_argument(
        "--requests", type=int, default=4000, help="requests counted per row (--instructions)"
    )
    args = parser.parse_args()

    selected = {n: t for n, t in ROWS.items() if n == BARE or not args.only or any(o in n for o in args.only)}
    if args.instructions:
        print_instructions(selected, args.requests)
        return
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
                # Bare first in even rounds, second in odd ones (which wrk starts first, loaded together):
                # whatever favours the first (or second) run of a pair favours each side equally often.
                pair = [servers[BARE], server] if round_ % 2 == 0 else [server, servers[BARE]]
                if args.together:
                    results = measure_together(pair, PATH, seconds=args.seconds)
                else:
                    results = [measure(one, PATH, seconds=args.seconds) for one in pair]
                (bare, bare_cpu), (other, other_cpu) = results if round_ % 2 == 0 else results[::-1]
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
        f"GET {PATH}, wrk -t1 -c16 -d{args.seconds}s, medians of {args.rounds} rounds (ratio: median of paired runs"
        + (", each pair loaded at once on one shared core)" if args.together else ")")
    )
    print(table(["app", "requests/s", "vs bare", "CPU us/req", "CPU vs bare", "p99 ms"], rows))
    print(
        "(CPU vs bare: bare's server CPU per request over this one's, i.e. relative throughput per CPU second)"
    )


def instructions_per_request(name: str, target: str, requests: int) -> float:
    """Machine instructions the server executes per request, counted by callgrind."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        runner = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
        server = start_uvicorn(
            name,
            target,
            probe=PATH,
            runner=runner,
            env={"PYTHONHASHSEED": "0"},
            startup_seconds=900,
            quiet=True,
        )
        try:
            pid = str(server.process.pid)
            send_requests(server.url + PATH, count=1000)  # warm-up: imports, caches, specialisation
            subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
            send_requests(server.url + PATH, count=requests)
            subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
            dump = Path(f"{out}.{pid}.1").read_text()
        finally:
            server.stop()
    return callgrind_total(dump) / requests


def print_instructions(selected: dict[str, str], requests: int) -> None:
    counts = count_instructions(
        selected, lambda name, target: instructions_per_request(name, target, requests)
    )
    print()
    print(
        f"GET {PATH}, {requests} requests over 16 keep-alive connections after 1000 warm-up, under callgrind"
    )
    print(instructions_table(counts, BARE))
    print(
        "(bare/this: the throughput ratio if time followed instructions; it ignores cache and branch effects)"
    )


if __name__ == "__main__":
    main()
