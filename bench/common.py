"""Shared pieces of the benchmarks: servers pinned to one core, wrk pinned to the other, medians."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from agentic_backend.metricstore.storage import stat_fields

SERVER_CPU = "0"
CLIENT_CPU = "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User plus system CPU time process ``pid`` has used so far (FileNotFoundError once it has ended);
    with ``reaped``, also that of its children that have ended and that it has waited for."""
    fields = stat_fields(f"/proc/{pid}/stat")
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, str]:
    """The fields of ``/proc/<pid>/status`` (``VmRSS``: ``"123 kB"``, ``voluntary_ctxt_switches``, ...)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server process has used so far."""
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_uvicorn(
    name: str,
    target: str,
    *,
    env: dict[str, str] | None = None,
    probe: str = "/",
    runner: list[str] | None = None,
    startup_seconds: float = 30,
    quiet: bool = False,
) -> Server:
    """``uvicorn --factory target`` on one core (or under ``runner``), the same flags for every row."""
    port = free_port()
    runner = ["taskset", "-c", SERVER_CPU] if runner is None else runner
    args = [*runner, sys.executable, "-m", "uvicorn", "--factory", target]
    args += [
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]
    process = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).parent.parent,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    server = Server(name, port, process)
    deadline = time.monotonic() + startup_seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(server.url + probe, timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} did not start")


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


_PACE_SCRIPTS = Path(tempfile.gettempdir())


def start_wrk(
    url: str, *, seconds: int, connections: int = 16, think_ms: int | None = None
) -> subprocess.Popen[str]:
    """wrk on the client core; with ``think_ms``, each connection waits that long after an answer before
    its next request (wrk's ``delay()`` hook), a paced load instead of back-to-back requests."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/bootstrap.sh (Debian package wrk)")
    args = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if think_ms is not None:
        script = _PACE_SCRIPTS / f"agentic-bench-think-{think_ms}ms.lua"
        script.write_text(f"function delay()\n  return {think_ms}\nend\n")
        args += ["-s", str(script)]
    return subprocess.Popen([*args, url], stdout=subprocess.PIPE, text=True)


def wrk_result(process: subprocess.Popen[str]) -> WrkResult:
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk failed ({process.returncode}): {out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, requests)


def wrk(url: str, *, seconds: int, connections: int = 16, think_ms: int | None = None) -> WrkResult:
    return wrk_result(start_wrk(url, seconds=seconds, connections=connections, think_ms=think_ms))


async def _keep_alive_requests(host: str, port: int, path: str, count: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None:
                raise RuntimeError(f"no Content-Length in {head!r}")
            await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()


def send_requests(url: str, *, count: int, connections: int = 16) -> None:
    """Exactly ``count`` keep-alive GETs of ``url`` over ``connections`` connections (wrk runs for a time,
    not a number of requests, and an instruction count per request needs the number)."""
    parsed = httpx.URL(url)
    host, port, path = parsed.host, parsed.port or 80, parsed.raw_path.decode()

    async def run() -> None:
        share, extra = divmod(count, connections)
        await asyncio.gather(
            *(_keep_alive_requests(host, port, path, share + (i < extra)) for i in range(connections))
        )

    asyncio.run(run())


def measure(server: Server, path: str, *, seconds: int) -> tuple[WrkResult, float]:
    """A wrk run, and the server's CPU microseconds per request during it."""
    return measure_together([server], path, seconds=seconds)[0]


def measure_together(servers: list[Server], path: str, *, seconds: int) -> list[tuple[WrkResult, float]]:
    """wrk against every server at once, all servers sharing one core: the scheduler gives each the same
    CPU time, so the ratio of their throughputs is the ratio of their costs per request, and whatever slows
    the machine during the run slows them all alike. Returns each one's result and CPU microseconds per
    request."""
    before = [server.cpu_seconds() for server in servers]
    processes = [start_wrk(server.url + path, seconds=seconds) for server in servers]
    results = [wrk_result(process) for process in processes]
    return [
        (result, (server.cpu_seconds() - cpu) / result.requests * 1e6)
        for server, cpu, result in zip(servers, before, results, strict=True)
    ]


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def count_instructions(selected: dict[str, str], count: Callable[[str, str], float]) -> dict[str, float]:
    """``count(name, target)`` for every row, two rows at once: instruction counts do not depend on load."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run scripts/bootstrap.sh (Debian package valgrind)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(count, name, target) for name, target in selected.items()}
        return {name: future.result() for name, future in futures.items()}


def callgrind_total(dump: str) -> int:
    """The instructions a callgrind dump counted."""
    found = re.search(r"^summary: (\d+)$", dump, re.M)
    if found is None:
        raise RuntimeError("no summary line in callgrind's dump")
    return int(found.group(1))


def instructions_table(counts: dict[str, float], bare: str) -> str:
    base = counts[bare]
    rows = [
        [name, f"{n / 1000:.2f}k", f"{(n - base) / 1000:+.2f}k", f"{base / n * 100:.1f} %"]
        for name, n in counts.items()
    ]
    return table(["app", "instructions/req", "vs bare", "bare/this"], rows)
