"""Exact cost of each instrumentation: machine instructions per request, the app driven in-process.

    uv run python -m bench.asgi_instructions [--calls 2000] [--only agentic ...]

``http_overhead.py --instructions`` counts a whole server under callgrind, but its count moves by a few
thousand instructions per request from run to run (about 0.4 % of a request: how requests from the
concurrent client happen to batch into event-loop iterations), which is as much as a change to the
middleware's hot path is worth. Here each app of ``bench/apps.py`` is called directly through ASGI, one
request after another, by a process under callgrind (PYTHONHASHSEED=0): no sockets, no server, no client,
so nothing varies between runs. The process warms up, has its counters zeroed, makes ``--calls`` requests,
dumps, is zeroed again, makes twice as many and dumps again; the difference of the two dumps over
``--calls`` is the cost of one request, with the cost of asking callgrind for a dump cancelled out.

It leaves out what a server adds to every request (about 95k instructions with uvicorn, httptools and
uvloop: ``http_overhead.py --instructions`` minus this bare figure), so its ratios are lower than the
throughput ratios of a served app; the differences to bare are what to compare. Under callgrind a request
takes about 10 ms instead of 0.2, so the duration histogram's bucket search runs a few edges further than
at full speed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import callgrind_total, count_instructions, instructions_table
from bench.http_overhead import BARE, PATH, ROWS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--only", nargs="*", default=[], help="rows to compare with bare (substrings)")
    parser.add_argument("--drive", help=argparse.SUPPRESS)  # the child: drive this app factory
    args = parser.parse_args()
    if args.drive:
        drive(args.drive, args.calls)
        return
    selected = {n: t for n, t in ROWS.items() if n == BARE or not args.only or any(o in n for o in args.only)}
    counts = count_instructions(selected, lambda _, target: count(target, args.calls))
    print()
    print(f"GET {PATH} called in-process through ASGI, under callgrind (exact; no server, see the docstring)")
    print(instructions_table(counts, BARE))


def count(target: str, calls: int) -> float:
    """Instructions per request of one app, from a child process under callgrind."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        child = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.asgi_instructions",
                "--drive",
                target,
                "--calls",
                str(calls),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            cwd=Path(__file__).parent.parent,
        )
        if child.returncode != 0:
            raise RuntimeError(f"{target} failed under callgrind:\n{child.stderr[-3000:]}")
        first, second = (callgrind_total(Path(f"{out}.{n}").read_text()) for n in (1, 2))
    return (second - first) / calls


def drive(target: str, calls: int) -> None:
    module, _, factory = target.partition(":")
    app = getattr(importlib.import_module(module), factory)()
    pid = str(os.getpid())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def requests(n: int) -> None:
        for _ in range(n):
            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": "1.1",
                "method": b"GET".decode("ascii"),  # a new string per request, as servers make it
                "scheme": "http",
                "path": PATH,
                "raw_path": PATH.encode(),
                "query_string": b"",
                "root_path": "",
                "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")],
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 8000),
                "state": {},
            }
            await app(scope, receive, send)
        if set(statuses) != {200}:
            raise SystemExit(f"{target} answered {sorted(set(statuses))}, not only 200")
        statuses.clear()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(requests(1000))  # warm-up: imports, caches, specialisation
    for n in (calls, 2 * calls):
        subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
        loop.run_until_complete(requests(n))
        subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    loop.close()


if __name__ == "__main__":
    main()
