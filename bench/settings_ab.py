"""Two values of the service's settings, side by side: chat completions a second and latency.

    uv run python -m bench.settings_ab AGENTIC_GC_THRESHOLD=700 AGENTIC_GC_THRESHOLD=10000 [--rounds 4]

Each argument is one variant: ``NAME=VALUE`` pairs joined by commas (an empty string: the defaults). One
service per variant (``serve``, one worker, embedded defaults) runs on core 0, all of them in front of one
``sim-llm`` on core 1 over HTTP, set up as ``bench.overhead`` sets up its service (an agent type on the
``openai`` provider, one model call, no tools, every body new). wrk, on core 1, loads one variant at a time,
the variants alternated within each round: throughput at 16 connections, then p50 and p99 at one. The
table gives each variant's medians over the rounds and its throughput against the first variant's, round
by round, so that a change of a few percent shows through this machine's drift (a variant that only wins
in one round is noise).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.agents_vs_litellm import run_wrk, wait_ready
from bench.common import CLIENT_CPU, SERVER_CPU, free_port, median, table
from bench.overhead import ADMIN_KEY, LUA, relay_env, start_pinned


def variant(text: str) -> dict[str, str]:
    """``"A=1,B=2"`` as an environment; every name must be one of the service's settings."""
    env = {}
    for pair in filter(None, text.split(",")):
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("AGENTIC_"):
            raise SystemExit(f"{pair!r}: give AGENTIC_NAME=VALUE pairs joined by commas")
        env[name] = value
    return env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "variants", nargs="+", help="NAME=VALUE[,NAME=VALUE...] per variant ('' for defaults)"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8, help="seconds of each wrk run")
    args = parser.parse_args()
    variants = [variant(text) for text in args.variants]
    with tempfile.TemporaryDirectory(prefix="bench-settings-ab-") as folder:
        work = Path(folder)
        upstream_port = free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        cli = [sys.executable, "-m", "agentic_backend"]
        sim = [*cli, "sim-llm", "--port", str(upstream_port)]
        processes = [start_pinned(sim, CLIENT_CPU, dict(os.environ))]
        urls = []
        for number, overrides in enumerate(variants):
            port = free_port()
            env = relay_env(work, upstream, work / f"data-{number}") | overrides
            serve = [*cli, "serve", "--port", str(port), "--no-access-log", "--log-level", "warning"]
            processes.append(start_pinned(serve, SERVER_CPU, env))
            urls.append(f"http://127.0.0.1:{port}")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"}
        lua = LUA % "relay"
        # variant -> connections -> one (req/s, p50, p99) per round
        results: list[dict[int, list[tuple[float, float, float]]]] = [{16: [], 1: []} for _ in variants]
        try:
            for url in urls:
                wait_ready(f"{url}/api/v1/monitoring/health", {})
                run_wrk(f"{url}/v1/chat/completions", headers, lua, seconds=3, connections=4)  # warm up
            for round_ in range(args.rounds):
                for connections in (16, 1):
                    for number, url in enumerate(urls):
                        rps, p50, p99, _ = run_wrk(
                            f"{url}/v1/chat/completions",
                            headers,
                            lua,
                            seconds=args.seconds,
                            connections=connections,
                        )
                        results[number][connections].append((rps, p50, p99))
                print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=60)
    rows = []
    for number, text in enumerate(args.variants):
        mine, first = results[number], results[0]
        ratios = [a[0] / b[0] for a, b in zip(mine[16], first[16], strict=True)]
        rows.append(
            [
                text or "(defaults)",
                f"{median([r[0] for r in mine[16]]):,.0f}",
                " ".join(f"{ratio:.3f}" for ratio in ratios),
                f"{median([r[1] for r in mine[1]]):.2f}",
                f"{median([r[2] for r in mine[1]]):.2f}",
            ]
        )
    print()
    print(
        f"POST /v1/chat/completions, wrk -t1, {args.seconds} s per run, medians of {args.rounds} rounds, "
        "the variants alternated"
    )
    headers_row = ["variant", "req/s at 16", "vs the first, by round", "p50 ms at 1", "p99 ms at 1"]
    print(table(headers_row, rows))


if __name__ == "__main__":
    main()
