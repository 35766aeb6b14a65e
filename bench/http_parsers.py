"""What the bounds on a client cost: uvicorn's httptools protocol, the guarded one (core/httpguard.py) and
h11, serving one small JSON route (``bench.apps:bare``).

    uv run python -m bench.http_parsers [--rounds 5] [--seconds 5]

Each round starts the three servers afresh and loads plain httptools together with one other (both on
core 0, two wrk on core 1; ``bench/common.py: measure_together``): the scheduler gives both the same CPU
time, so the ratio of their requests/s is the ratio of their costs per request, and the machine's noise
hits both alike. Reported: each protocol's median requests/s and the median ratio to plain httptools.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from bench.common import Server, measure_together, median, start_uvicorn, table

ROWS = {
    "httptools (uvicorn's, unbounded)": "httptools",
    "httptools guarded (the service's)": "agentic_backend.core.httpguard:GuardedHttpToolsProtocol",
    "h11 (uvicorn's)": "h11",
}
PLAIN = "httptools (uvicorn's, unbounded)"
PATH = "/items/7"


def serve(protocol: str, port: int) -> None:
    uvicorn.run(
        "bench.apps:bare", factory=True, port=port, http=protocol, access_log=False, log_level="warning"
    )


def start(protocol: str) -> Server:
    # start_uvicorn runs `python -m uvicorn` with --http httptools; the guarded protocol is an import
    # string, which only uvicorn.run takes: this module serves it instead (runner = this module).
    runner = ["taskset", "-c", "0", sys.executable, "-m", "bench.http_parsers", "--serve", protocol]
    return start_uvicorn(protocol, "bench.apps:bare", runner=runner, probe=PATH, quiet=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        # Called as the runner: the port comes last from start_uvicorn's arguments.
        serve(sys.argv[2], int(sys.argv[sys.argv.index("--port") + 1]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    throughput: dict[str, list[float]] = {name: [] for name in ROWS}
    ratios: dict[str, list[float]] = {name: [] for name in ROWS if name != PLAIN}
    for _ in range(args.rounds):
        for name, protocol in ROWS.items():
            if name == PLAIN:
                continue
            servers = [start(ROWS[PLAIN]), start(protocol)]
            try:
                (plain, _), (other, _) = measure_together(servers, PATH, seconds=args.seconds)
            finally:
                for server in servers:
                    server.stop()
            throughput[PLAIN].append(plain.requests_per_second)
            throughput[name].append(other.requests_per_second)
            ratios[name].append(other.requests_per_second / plain.requests_per_second)
    rows = [
        [name, f"{median(throughput[name]):.0f}", f"{median(ratios[name]):.3f}" if name in ratios else "1"]
        for name in ROWS
    ]
    print(f"{args.rounds} rounds of {args.seconds} s, each paired with plain httptools on one core")
    print(table(["protocol", "requests/s (shared core)", "vs httptools"], rows))


if __name__ == "__main__":
    main()
