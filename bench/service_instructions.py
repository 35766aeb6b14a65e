"""Machine instructions the whole service executes per chat completion, counted by callgrind.

    uv run python -m bench.service_instructions [--requests 600] [--keep callgrind.out]

The service (``serve``, one worker, embedded defaults) runs under valgrind's callgrind with
``PYTHONHASHSEED=0``, in front of ``sim-llm`` over HTTP (an agent type on the ``openai`` provider, one
model call, no tools, as ``bench.overhead`` sets it up). One client sends ``POST /v1/chat/completions``
one at a time (each body new: no cache hit), 300 to warm up, then the counter is zeroed and ``--requests``
more are counted: everything the server process executed (uvicorn, FastAPI, the key, the provider call,
the ledger's transaction, the metrics) divided by their number. At one connection each request pays for
its own transaction and loop turns, which is what the added latency at one connection measures; the
count is the same run after run to a few tenths of a percent, whatever else the machine does, so it shows
a change of a percent that timing on this machine cannot (bench/overhead.py). ``--keep FILE`` keeps the
counted profile, for ``callgrind_annotate --inclusive=yes FILE``: where the instructions go, by C function
(SQLite, pydantic-core, the interpreter, the kernel's entry points).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import callgrind_total, free_port
from bench.overhead import ADMIN_KEY, relay_env

KEY = ADMIN_KEY
WARM_UP = 300


def _connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=300)


def _wait_ready(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection = _connect(port)
            connection.request("GET", "/api/v1/monitoring/health")
            connection.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _send(connection: http.client.HTTPConnection, first: int, count: int) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    for number in range(first, first + count):
        body = {"model": "relay", "messages": [{"role": "user", "content": f"bench question {number}"}]}
        connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the service answered {response.status}")


def count(requests: int, keep: Path | None = None) -> float:
    """Instructions per request (after the warm-up)."""
    with tempfile.TemporaryDirectory(prefix="bench-service-instructions-") as folder:
        work = Path(folder)
        upstream_port, port = free_port(), free_port()
        cli = [sys.executable, "-m", "agentic_backend"]
        upstream = subprocess.Popen(
            [*cli, "sim-llm", "--port", str(upstream_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        env = relay_env(work, f"http://127.0.0.1:{upstream_port}", work / "data") | {"PYTHONHASHSEED": "0"}
        out = work / "callgrind.out"
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}.%p",
                *cli,
                "serve",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(port, seconds=900)
            connection = _connect(port)
            _send(connection, 0, WARM_UP)  # imports, caches, specialisation, the first pages
            subprocess.run(["callgrind_control", "--zero", str(server.pid)], check=True, capture_output=True)
            _send(connection, WARM_UP, requests)
            subprocess.run(["callgrind_control", "--dump", str(server.pid)], check=True, capture_output=True)
            profile = Path(f"{out}.{server.pid}.1")
            total = callgrind_total(profile.read_text())
            if keep is not None:
                shutil.copyfile(profile, keep)
        finally:
            server.terminate()
            upstream.terminate()
            server.wait(timeout=120)
            upstream.wait(timeout=30)
    return total / requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600, help="requests counted, after the warm-up")
    parser.add_argument("--keep", type=Path, help="keep the counted callgrind profile in this file")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run scripts/bootstrap.sh (Debian package valgrind)")
    per_request = count(args.requests, args.keep)
    print(
        f"POST /v1/chat/completions at one connection, {args.requests} requests after {WARM_UP}, "
        f"under callgrind: {per_request / 1000:,.1f}k instructions a request"
    )


if __name__ == "__main__":
    main()
