"""Time to first token through the whole path against the provider's own.

    uv run python -m bench.ttft [--requests 30] [--latency-ms 200]

``sim-llm`` plays the provider (OpenAI's wire format, streaming, a first token after ``--latency-ms``, then
50 tokens a second). The same question is streamed with the official ``openai`` SDK, alternately: straight
from ``sim-llm`` (the provider's own time to first token), through the service's OpenAI-compatible face
(``POST /v1/chat/completions``, key check, limits, budget reservation, the openai adapter streaming from
``sim-llm``), and through the native SSE route. Every question is new, so the cache never answers.
Medians, and what the service adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from bench.common import free_port, table

ADMIN_KEY = "bench-admin-key-0123456789-abcdefghijklmnop"
ROOT = Path(__file__).parent.parent


def wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def first_token_sdk(client: openai.OpenAI, model: str, question: str) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
            stream.close()
            return first
    raise RuntimeError("no token")


def first_token_native(client: httpx.Client, question: str) -> float:
    started = time.perf_counter()
    body = {"query": question, "stream": True}
    with client.stream("POST", "/api/v1/agents/oai/query", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                return time.perf_counter() - started
    raise RuntimeError("no token")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sim_port, port = free_port(), free_port()
        sim_args = [sys.executable, "-m", "agentic_backend", "sim-llm", "--port", str(sim_port)]
        sim_args += ["--latency-ms", str(args.latency_ms), "--tokens-per-second", "50"]
        sim = subprocess.Popen(sim_args, cwd=ROOT)
        agents = Path(folder) / "agents.json"
        agents.write_text(json.dumps([{"name": "oai", "provider": "openai", "model": "gpt-4o-mini"}]))
        env = {
            **os.environ,
            "AGENTIC_DATA_DIR": str(Path(folder) / "data"),
            "AGENTIC_ADMIN_API_KEY": ADMIN_KEY,
            "AGENTIC_AGENTS_FILE": str(agents),
            "AGENTIC_OPENAI_API_KEY": "sk-bench",
            "AGENTIC_OPENAI_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
        }
        serve_args = [sys.executable, "-m", "agentic_backend", "serve", "--port", str(port)]
        service = subprocess.Popen(
            [*serve_args, "--no-access-log", "--log-level", "warning"], env=env, cwd=ROOT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait(f"http://127.0.0.1:{sim_port}/stats")
            wait(f"{url}/api/v1/monitoring/health")
            provider = openai.OpenAI(base_url=f"http://127.0.0.1:{sim_port}/v1", api_key="sk-bench")
            face = openai.OpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY)
            native = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
            rows: dict[str, list[float]] = {"provider": [], "face": [], "native": []}
            for n in range(args.requests + 3):  # the first three warm up
                question = f"question {n}: tell me about the cache"
                provider_ms = first_token_sdk(provider, "gpt-4o-mini", question) * 1000
                face_ms = first_token_sdk(face, "oai", question + " (face)") * 1000
                native_ms = first_token_native(native, question + " (native)") * 1000
                if n >= 3:
                    rows["provider"].append(provider_ms)
                    rows["face"].append(face_ms)
                    rows["native"].append(native_ms)
        finally:
            service.terminate()
            sim.terminate()
            service.wait(timeout=30)
            sim.wait(timeout=30)
    base = statistics.median(rows["provider"])
    labels = {
        "provider": "sim-llm directly (the provider's own)",
        "face": "through POST /v1/chat/completions",
        "native": "through the native SSE route",
    }
    print(
        f"Time to first token, {args.requests} streamed questions each, provider latency {args.latency_ms} ms\n"
    )
    print(
        table(
            ["path", "ms (median)", "added ms", "ratio", "p90 ms"],
            [
                [
                    labels[name],
                    f"{statistics.median(values):.1f}",
                    f"{statistics.median(values) - base:+.1f}",
                    f"{statistics.median(values) / base:.3f}",
                    f"{statistics.quantiles(values, n=10)[-1]:.1f}",
                ]
                for name, values in rows.items()
            ],
        )
    )


if __name__ == "__main__":
    main()
