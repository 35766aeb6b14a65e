"""What the fault drills break and how they watch it: a PostgreSQL cluster and a Redis server the test
owns (never the machine's shared ones), client traffic that records every answer, and the checks that
nothing was lost (a ledger row per answered query, no counter ever went backwards)."""

from __future__ import annotations

import collections
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agentic_backend.metricstore.storage import stat_fields
from tests.integration.harness import LOOPBACK, Process, free_port, require_binary, wait_until

# Every counter-like series: a reset of any of them over a drill is a number that went backwards.
COUNTER_SERIES = '{__name__=~".+_total|.+_bucket|.+_count|.+_sum", job="agentic-backend"}'


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        require_binary("initdb")  # fails in CI, skips elsewhere
        return Path(shutil.which("initdb") or "initdb").parent
    return Path(found[-1]).parent


class PostgresCluster:
    """A PostgreSQL cluster of the test's own (``initdb`` + ``pg_ctl``) on a free loopback port. As root,
    the server runs as the ``postgres`` user, which PostgreSQL requires. ``runner`` prefixes the server's
    start (``taskset -c 1`` in bench/workers.py); ``durable`` keeps PostgreSQL's fsync, which tests turn
    off for speed."""

    def __init__(self, *, runner: tuple[str, ...] = (), durable: bool = False) -> None:
        self.runner = list(runner)
        self.durable = durable
        self.bin = _postgres_bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="agentic-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as_user: list[str] = []
        self._frozen: list[int] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(self.bin / "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, *args: object) -> None:
        subprocess.run([*self._as_user, *map(str, args)], check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@{LOOPBACK}:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={LOOPBACK}"
        if not self.durable:
            options += " -c fsync=off"
        pg_ctl = [*self.runner, self.bin / "pg_ctl"]
        self._run(*pg_ctl, "-D", self.data, "-l", self.log, "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def processes(self) -> list[int]:
        """The postmaster and its children (the backends holding the service's connections)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        found = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat_fields(str(stat))[1]) == postmaster:  # its parent
                    found.append(int(stat.parent.name))
        return found

    def freeze(self) -> None:
        """Hang the server: every process stopped (SIGSTOP), its sockets still open, as a server that hangs
        or a network that drops packets leaves them. The kernel still accepts connections for it."""
        self._frozen = self.processes()
        for pid in self._frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    def destroy(self) -> None:
        self.thaw()
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """A ``redis-server`` of the test's own, on a free loopback port, stopped and started at will."""

    def __init__(self, workdir: Path, *, runner: tuple[str, ...] = ()) -> None:
        self.runner = list(runner)
        self.binary = require_binary("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.process: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        args = [*self.runner, self.binary, "--port", str(self.port), "--bind", LOOPBACK]
        args += ["--save", "", "--appendonly", "no"]
        self.process = Process("redis", [*args, "--dir", str(self.workdir)], self.workdir)
        wait_until(lambda: _answers(self.port), timeout=10, what="redis-server to listen")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def _answers(port: int) -> bool:
    import socket

    with socket.create_connection((LOOPBACK, port), timeout=1):
        return True


@dataclass
class Answer:
    at: float
    status: int
    content_type: str
    body: dict[str, Any] | None
    retry_after: str | None


@dataclass
class Traffic:
    """Agent queries sent one after another from a thread until stopped, every answer recorded."""

    url: str
    key: str
    agent: str = "assistant"
    suffix: str = ""  # appended to every query: a sim directive such as "#fail:rate_limit"
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {self.key}"}) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    response = client.post(
                        f"/api/v1/agents/{self.agent}/query",
                        json={"query": f"drill question {n} {uuid.uuid4().hex[:8]} {self.suffix}"},
                        timeout=15,
                    )
                except httpx.HTTPError:
                    self.answers.append(Answer(time.time(), 0, "", None, None))  # no answer at all
                    time.sleep(0.05)
                    continue
                try:
                    body = response.json()
                except ValueError:
                    body = None
                self.answers.append(
                    Answer(
                        time.time(),
                        response.status_code,
                        response.headers.get("content-type", ""),
                        body,
                        response.headers.get("retry-after"),
                    )
                )
                time.sleep(0.02)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> collections.Counter[int]:
        return collections.Counter(a.status for a in self.answers if since <= a.at <= until)

    def answered(self) -> list[str]:
        """Request ids of every query answered 200."""
        return [a.body["request_id"] for a in self.answers if a.status == 200 and a.body]

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def traffic(url: str, key: str, *, agent: str = "assistant") -> Iterator[Traffic]:
    sender = Traffic(url, key, agent)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    try:
        yield sender
    finally:
        sender.stop()
        thread.join(timeout=30)


def counter_resets(prometheus: str, window: str = "15m") -> dict[str, float]:
    """Every counter-like metric whose series went backwards in Prometheus' view during the window,
    with how many resets (resets() drops the metric name, so each name is asked alone)."""
    names = httpx.get(
        f"{prometheus}/api/v1/label/__name__/values", params={"match[]": COUNTER_SERIES}, timeout=10
    ).json()["data"]
    assert names, "Prometheus holds no counter of the service"
    found = {}
    for name in names:
        body = httpx.get(
            f"{prometheus}/api/v1/query",
            params={"query": f'sum(resets({name}{{job="agentic-backend"}}[{window}]))'},
            timeout=10,
        ).json()
        assert body["status"] == "success", body
        total = sum(float(series["value"][1]) for series in body["data"]["result"])
        if total:
            found[name] = total
    return found


def report(title: str, rows: dict[str, object]) -> None:
    """What a drill measured, printed for the log (pytest -s, or the captured output of a failure)."""
    print(f"\n== drill: {title}")
    for name, measured in rows.items():
        print(f"   {name}: {measured}")


def wait_for_alert(check: Callable[[], list[dict[str, Any]]], name: str, timeout: float = 60) -> float:
    started = time.monotonic()
    wait_until(check, timeout=timeout, what=f"the {name} notification at the webhook", interval=0.5)
    return time.monotonic() - started
