"""Exact cost of each instrumentation: machine instructions per request, the app driven in-process.

    uv run python -m bench.asgi_instructions [--calls 1000] [--only agentic ...]

``http_overhead.py --instructions`` counts a whole server under callgrind, but its count moves by a few
thousand instructions per request from run to run (about 0.4 % of a request: how requests from the
concurrent client happen to batch into event-loop iterations), which is as much as a change to the
middleware's hot path is worth. Here each app of ``bench/apps.py`` is called directly through ASGI by a
process under callgrind (PYTHONHASHSEED=0): no sockets, no server, no client. Each request runs to completion
by hand (``coroutine.send``) inside ``operator.call``, and callgrind collects only inside that C function
(``--collect-atstart=no --toggle-collect=_operator_call``), so the count covers the requests and nothing
else: the same figure to the instruction run after run (bare FastAPI: 79,821,583 for 200 requests, twice),
but for the few instructions by which a histogram's bucket search follows the measured durations.

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
import operator
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
    parser.add_argument("--calls", type=int, default=1000)
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
    """Instructions per request of one app: a child process under callgrind runs ``drive``."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        child = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--collect-atstart=no",
                "--toggle-collect=_operator_call",
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
        return callgrind_total(out.read_text()) / calls


def drive(target: str, calls: int) -> None:
    """Make warm-up requests, then ``calls`` counted ones, each inside ``operator.call`` (see ``count``)."""
    module, _, factory = target.partition(":")
    app = getattr(importlib.import_module(module), factory)()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: set[int] = set()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    def request() -> None:
        """One request, run to completion by hand: no event-loop iteration is counted with it."""
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
        coroutine = app(scope, receive, send)
        try:
            coroutine.send(None)
        except StopIteration:
            return
        coroutine.close()
        raise SystemExit(f"{target} waited on something: only requests that never wait can be counted")

    async def run() -> None:  # inside a running loop, for code that asks for it
        for _ in range(1000):  # warm-up: imports, caches, specialisation
            request()
        for _ in range(calls):
            operator.call(request)
        if statuses != {200}:
            raise SystemExit(f"{target} answered {sorted(statuses)}, not only 200")

    asyncio.run(run())


if __name__ == "__main__":
    main()
