"""What the service adds over the provider, against the same upstream as LiteLLM's proxy.

    uv run python -m bench.overhead [--rounds 3] [--seconds 10]

One upstream, ``agentic-backend sim-llm`` (OpenAI's wire format over HTTP, answering at once), on core 1
with the load generator; in front of it, on core 0 and one worker each: the service (an agent type on the
``openai`` provider pointed at the upstream, one model call, no tools, POST /v1/chat/completions) and
LiteLLM's proxy 1.x (``openai/gpt-4o-mini`` at the same upstream), installed in its own virtual environment
as ``bench.agents_vs_litellm`` does. wrk posts one chat completion per call, every body new (no cache
hit). Rows alternate (upstream alone, LiteLLM, the service) over rounds; medians.

It prints throughput at 16 connections; latency at one connection; and latency at a paced load of half
the service's own throughput of that round (closed-loop latency at saturation is only queueing): wrk's
``delay()`` spaces each of 4 connections' requests, every row at the same pace (LiteLLM, slower, is
saturated by it: its row says so). For each, p50 and p99, and what each proxy adds over the upstream
alone (its own figure subtracted). Two rows are floors under the service. The lower is a bare ASGI
callable on the same uvicorn that relays the body with the service's own HTTP client
(``bench.apps:asgi_relay``: no framework, no validation): what no Python service on uvicorn goes under on
the host. The other is a bare FastAPI app on the same uvicorn that validates the body and relays it with
one aiohttp POST (``bench.apps:relay``; no key, budget, cache, ledger or metrics), so the table says what
the framework and the HTTP client cost alone and what the service adds over them. The service's own
X-Agentic-Overhead-Ms is the same figure measured inside; this is the one a client sees. Targets (issue
23): added p50 <= 0.5 ms, p99 <= 2 ms at one connection, p99 <= 5 ms paced; >= 2,500 requests/s at 16
and >= 25x LiteLLM's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.agents_vs_litellm import ensure_litellm, run_wrk, wait_ready
from bench.common import CLIENT_CPU, SERVER_CPU, free_port, median, start_uvicorn, table

ADMIN_KEY = "bench-admin-key-0123456789-abcdefghijklmnop"
LITELLM_KEY = "sk-bench-master-key"
PACED = 0  # results' key for the paced runs
FLOOR = "FastAPI relay (floor)"
NAKED = "ASGI relay (no framework)"
LUA = """
counter = 0
math.randomseed(os.time())
request = function()
  counter = counter + 1
  local text = "bench question " .. counter .. " " .. math.random(1, 1000000000)
  local body = '{"model": "%s", "messages": [{"role": "user", "content": "' .. text .. '"}]}'
  return wrk.format("POST", nil, nil, body)
end
"""


def relay_env(work: Path, upstream: str, data: Path) -> dict[str, str]:
    """The environment of a service in front of ``upstream`` (an OpenAI-style server's root URL) whose
    agent type ``relay`` makes one model call with no tools (its file written into ``work``)."""
    agents = work / "agents.json"
    agents.write_text(
        json.dumps(
            [{"name": "relay", "provider": "openai", "model": "gpt-4o-mini", "tools": [], "max_steps": 1}]
        )
    )
    return {
        **os.environ,
        "AGENTIC_DATA_DIR": str(data),
        "AGENTIC_ADMIN_API_KEY": ADMIN_KEY,
        "AGENTIC_AGENTS_FILE": str(agents),
        "AGENTIC_OPENAI_API_KEY": "sk-not-used",
        "AGENTIC_OPENAI_BASE_URL": f"{upstream}/v1",
    }


def start_pinned(args: list[str], cpu: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", cpu, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/bootstrap.sh")
    litellm = ensure_litellm()
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    upstream_port, ours_port, theirs_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
        f"      api_key: sk-not-used\n      api_base: {upstream}/v1\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n"
    )
    ours_env = relay_env(work, upstream, work / "data")
    cli = [sys.executable, "-m", "agentic_backend"]
    processes = [
        start_pinned([*cli, "sim-llm", "--port", str(upstream_port)], CLIENT_CPU, dict(os.environ)),
        start_pinned(
            [*cli, "serve", "--port", str(ours_port), "--no-access-log", "--log-level", "warning"],
            SERVER_CPU,
            ours_env,
        ),
        start_pinned(
            [str(litellm), "--config", str(config), "--port", str(theirs_port), "--num_workers", "1"],
            SERVER_CPU,
            {**os.environ, "LITELLM_LOG": "ERROR"},
        ),
    ]
    floor = start_uvicorn(
        FLOOR, "bench.apps:relay", env={"BENCH_UPSTREAM": f"{upstream}/v1"}, startup_seconds=60, quiet=True
    )
    naked = start_uvicorn(
        NAKED,
        "bench.apps:asgi_relay",
        env={"BENCH_UPSTREAM": f"{upstream}/v1"},
        startup_seconds=60,
        quiet=True,
    )
    json_type = {"Content-Type": "application/json"}
    rows = {
        "upstream alone (sim-llm)": (
            f"{upstream}/v1/chat/completions",
            {**json_type, "Authorization": "Bearer x"},
            "gpt-4o-mini",
        ),
        "LiteLLM proxy": (
            f"http://127.0.0.1:{theirs_port}/chat/completions",
            {**json_type, "Authorization": f"Bearer {LITELLM_KEY}"},
            "gpt-4o-mini",
        ),
        NAKED: (f"{naked.url}/v1/chat/completions", json_type, "gpt-4o-mini"),
        FLOOR: (f"{floor.url}/v1/chat/completions", json_type, "gpt-4o-mini"),
        "agentic-backend": (
            f"http://127.0.0.1:{ours_port}/v1/chat/completions",
            {**json_type, "Authorization": f"Bearer {ADMIN_KEY}"},
            "relay",
        ),
    }
    # connections -> (req/s, p50, p99) per round; PACED: the paced runs (4 connections)
    results: dict[str, dict[int, list[tuple[float, float, float]]]] = {
        name: {1: [], 16: [], PACED: []} for name in rows
    }
    try:
        wait_ready(f"{upstream}/stats", {})
        wait_ready(f"http://127.0.0.1:{ours_port}/api/v1/monitoring/health", {})
        wait_ready(f"http://127.0.0.1:{theirs_port}/health/liveliness", rows["LiteLLM proxy"][1])
        for url, headers, model in rows.values():  # warm up
            run_wrk(url, headers, LUA % model, seconds=2, connections=4)
        for round_ in range(args.rounds):
            for connections in (16, 1):
                for name, (url, headers, model) in rows.items():
                    rps, p50, p99, _ = run_wrk(
                        url, headers, LUA % model, seconds=args.seconds, connections=connections
                    )
                    results[name][connections].append((rps, p50, p99))
            pace = results["agentic-backend"][16][-1][0] / 2  # requests/s: half the service's capacity
            delay_ms = max(1, round(4 * 1000 / pace))  # between two requests of one of 4 connections
            for name, (url, headers, model) in rows.items():
                lua = LUA % model + f"\ndelay = function() return {delay_ms} end\n"
                rps, p50, p99, _ = run_wrk(url, headers, lua, seconds=args.seconds, connections=4)
                results[name][PACED].append((rps, p50, p99))
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        floor.stop()
        naked.stop()
    _report(results, args)


def _report(
    results: dict[str, dict[int, list[tuple[float, float, float]]]], args: argparse.Namespace
) -> None:
    def med(name: str, connections: int, index: int) -> float:
        return median([row[index] for row in results[name][connections]])

    base = "upstream alone (sim-llm)"
    theirs = med("LiteLLM proxy", 16, 0)
    pace = median([rps / 2 for rps, _, _ in results["agentic-backend"][16]])
    rows = []
    for name in results:
        rps, p50, p99 = med(name, 16, 0), med(name, 1, 1), med(name, 1, 2)
        added = "" if name == base else f"+{p50 - med(base, 1, 1):.2f} / +{p99 - med(base, 1, 2):.2f}"
        paced = med(name, PACED, 2)
        paced_added = "" if name == base else f"+{paced - med(base, PACED, 2):.2f}"
        saturated = " (saturated)" if pace > 0.9 * rps else ""  # the pace is past its own capacity
        rows.append(
            [
                name,
                f"{rps:.0f}",
                f"{rps / theirs:.1f}x",
                f"{p50:.2f}",
                f"{p99:.2f}",
                added,
                f"{paced:.2f}{saturated}",
                paced_added,
            ]
        )
    print()
    print(
        f"POST /v1/chat/completions, wrk -t1, {args.seconds} s per run, medians of {args.rounds} alternating "
        f"rounds; paced: about {pace:.0f} requests/s over 4 connections"
    )
    headers = ["", "req/s at 16", "vs LiteLLM", "p50 ms at 1", "p99 ms at 1", "added p50 / p99 ms"]
    print(table([*headers, "paced p99 ms", "added paced p99"], rows))
    ours = "agentic-backend"
    print(
        f"\nthe service against its floor: {med(ours, 16, 0) / med(FLOOR, 16, 0):.0%} of its throughput at 16; "
        f"+{med(ours, 1, 1) - med(FLOOR, 1, 1):.2f} / +{med(ours, 1, 2) - med(FLOOR, 1, 2):.2f} ms "
        "(p50 / p99) over it at 1"
    )
    over = {name: med(name, 1, 1) - med(base, 1, 1) for name in (NAKED, FLOOR, ours)}
    print(
        f"added p50 at 1: no framework +{over[NAKED]:.2f} ms, FastAPI +{over[FLOOR]:.2f}, "
        f"the service +{over[ours]:.2f} (the target, +0.50, is {0.5 / over[NAKED]:.2f}x what uvicorn "
        "and one provider call add with nothing else on this host)"
    )


if __name__ == "__main__":
    main()
