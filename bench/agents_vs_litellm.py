"""One agent query through the whole path vs LiteLLM's proxy answering a mocked model, same load generator.

    uv run python -m bench.agents_vs_litellm [--rounds 3] [--seconds 10]

Ours: ``agentic-backend serve`` (one worker, SQLite, in-memory cache, ``sim`` at zero latency) on core 0:
key check, permission, session (in the session row), cache miss (every query text is new), the model call,
the ledger write and the metrics. Theirs: ``litellm --config`` (one worker) with a model whose
``mock_response`` answers at once, installed in its own virtual environment under bench/.venv-litellm
(``pip install 'litellm[proxy]'``), on core 0. wrk on core 1 posts one request per call, with a Lua script
making each body unique. Rows alternate (theirs, ours, theirs, ours, ...); medians. Afterwards the ledger is
counted against wrk's completed requests: nothing may be missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import CLIENT_CPU, SERVER_CPU, free_port, median, table

HERE = Path(__file__).resolve().parent
LITELLM_VENV = HERE / ".venv-litellm"
ADMIN_KEY = "bench-admin-key-0123456789-abcdefghijklmnop"
LITELLM_KEY = "sk-bench-master-key"

LUA = """
counter = 0
math.randomseed(os.time())
local session_ids = {%s}
request = function()
  counter = counter + 1
  local text = "bench question " .. counter .. " " .. math.random(1, 1000000000)
  local body
  if %s then
    body = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' .. text .. '"}]}'
  elseif #session_ids > 0 then
    body = '{"query": "' .. text .. '", "session_id": "' .. session_ids[math.random(#session_ids)] .. '"}'
  elseif %s then
    body = '{"query": "the same question every time"}'
  else
    body = '{"query": "' .. text .. '"}'
  end
  return wrk.format("POST", nil, nil, body)
end
"""


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print("installing litellm[proxy] into bench/.venv-litellm (once) ...", flush=True)
        subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(LITELLM_VENV)], check=True)
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--python",
                str(LITELLM_VENV / "bin" / "python"),
                "litellm[proxy]",
            ],
            check=True,
        )
    return binary


def wait_ready(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def run_wrk(
    url: str, headers: dict[str, str], lua: str, *, seconds: int, connections: int
) -> tuple[float, float, float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    args = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        script.name,
    ]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def ms(label: str) -> float:
        number, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
        return float(number) * units[unit]

    if bad:
        raise RuntimeError(f"{bad.group(1)} failed requests against {url}:\n{out}")
    return rps, ms("50%"), ms("99%"), total


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
    work = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
        "      api_key: sk-not-used\n      mock_response: 'Here is what I found. The short answer is yes.'\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n"
    )
    ours_port, theirs_port = free_port(), free_port()
    env = {**os.environ, "AGENTIC_DATA_DIR": str(work / "data"), "AGENTIC_ADMIN_API_KEY": ADMIN_KEY}
    processes = [
        subprocess.Popen(
            [
                "taskset",
                "-c",
                SERVER_CPU,
                sys.executable,
                "-m",
                "agentic_backend",
                "serve",
                "--port",
                str(ours_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                "taskset",
                "-c",
                SERVER_CPU,
                str(litellm),
                "--config",
                str(config),
                "--port",
                str(theirs_port),
                "--num_workers",
                "1",
            ],
            env={**os.environ, "LITELLM_LOG": "ERROR"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
    ]
    ours_headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    theirs_headers = {"Authorization": f"Bearer {LITELLM_KEY}", "Content-Type": "application/json"}
    ours = f"http://127.0.0.1:{ours_port}"
    theirs = f"http://127.0.0.1:{theirs_port}"
    try:
        wait_ready(f"{ours}/api/v1/monitoring/health", {})
        wait_ready(f"{theirs}/health/liveliness", theirs_headers)
        sessions = [
            httpx.post(f"{ours}/api/v1/sessions", headers=ours_headers).json()["id"] for _ in range(64)
        ]
        ids = ",".join(f'"{s}"' for s in sessions)
        rows = {
            "LiteLLM proxy (mock_response)": (
                f"{theirs}/chat/completions",
                theirs_headers,
                LUA % ("", "true", "false"),
            ),
            "agentic-backend, session, cache miss": (
                f"{ours}/api/v1/agents/assistant/query",
                ours_headers,
                LUA % (ids, "false", "false"),
            ),
            "agentic-backend, stateless, cache miss": (
                f"{ours}/api/v1/agents/assistant/query",
                ours_headers,
                LUA % ("", "false", "false"),
            ),
            "agentic-backend, cache hit": (
                f"{ours}/api/v1/agents/assistant/query",
                ours_headers,
                LUA % ("", "false", "true"),
            ),
        }
        results: dict[str, dict[int, list[tuple[float, float, float]]]] = {
            name: {1: [], 16: []} for name in rows
        }
        completed = 0
        for url, headers, lua in rows.values():  # warm up
            run_wrk(url, headers, lua, seconds=2, connections=4)
        for round_ in range(args.rounds):
            for connections in (16, 1):
                for name, (url, headers, lua) in rows.items():
                    rps, p50, p99, total = run_wrk(
                        url, headers, lua, seconds=args.seconds, connections=connections
                    )
                    results[name][connections].append((rps, p50, p99))
                    if name.startswith("agentic"):
                        completed += total
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        usage = httpx.get(
            f"{ours}/api/v1/usage", params={"limit": 0}, headers=ours_headers, timeout=30
        ).json()
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)

    base = results["LiteLLM proxy (mock_response)"]
    base_rps = median([r for r, _, _ in base[16]])
    base_p99 = median([p for _, _, p in base[16]])
    table_rows = []
    for name, by_clients in results.items():
        rps = median([r for r, _, _ in by_clients[16]])
        p99 = median([p for _, _, p in by_clients[16]])
        p50_one = median([p for _, p, _ in by_clients[1]])
        table_rows.append(
            [
                name,
                f"{rps:.0f}",
                f"{rps / base_rps:.1f}x",
                f"{p99:.1f}",
                f"{p99 / base_p99:.2f}",
                f"{p50_one:.1f}",
            ]
        )
    print()
    print(f"POST one query, wrk -t1, {args.seconds} s per run, medians of {args.rounds} alternating rounds")
    print(
        table(["server", "req/s @16", "vs LiteLLM", "p99 ms @16", "p99 vs LiteLLM", "p50 ms @1"], table_rows)
    )
    ledger = usage["totals"]["queries"]
    # Warm-up and session creation add rows; wrk counts only completed requests of timed runs.
    print(
        f"\nledger rows {ledger} >= completed timed requests {completed}: {'ok' if ledger >= completed else 'MISSING'}"
    )
    print(json.dumps({"ledger_rows": ledger, "completed": completed}))


if __name__ == "__main__":
    main()
