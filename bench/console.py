"""The console at scale: 1,000,000 ledger rows and a full day of history, on SQLite and on PostgreSQL.

For each store: the service on one core (``taskset -c 0``), a ledger of ``--rows`` queries spread over the
last 30 days across 200 keys, 4 agent types and 3 models (with their rollups, built as the migration
builds them), and 25 hours of metric history. Then, from the other core, each console data call is timed
``--repeat`` times (p50 and p95): the overview for 1 h and 24 h, the month's spend, the first page of the
query ledger, a filtered page and a page deep in the ledger. Last, ``--consoles`` consoles left open on
auto-refresh (each: overview and health every 30 s) are simulated at 20 times their pace, and the
service's CPU for it is scaled back to what those consoles cost: the share of one core. And the page's
own assets, compressed.

    uv run python -m bench.console                    # SQLite and PostgreSQL, 1,000,000 rows
    uv run python -m bench.console --stores sqlite --rows 100000

Targets (issue 21): every data call p95 under 300 ms, the first page of queries under 100 ms, 10 consoles
under 2 % of a core, the assets under 400 KB compressed.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.common import SERVER_CPU, free_port, process_cpu_seconds, table

ADMIN = "agb_bench_console_" + "x" * 32
POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
STATIC = Path(__file__).parents[1] / "src" / "agentic_backend" / "console" / "static"
AGENTS = ("assistant", "researcher", "calculator", "support")
MODELS = (("sim", "sim-small"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku"))
STATUSES = ("success",) * 18 + ("error", "rejected")


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-c", sql], check=True)


class Service:
    def __init__(self, folder: Path, database_url: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AGENTIC_DATA_DIR": str(folder), "AGENTIC_ADMIN_API_KEY": ADMIN}
        env.pop("AGENTIC_DATABASE_URL", None)
        env.pop("AGENTIC_REDIS_URL", None)
        if database_url:
            env["AGENTIC_DATABASE_URL"] = database_url
        command = [sys.executable, "-m", "agentic_backend", "serve", "--port", str(self.port)]
        command += ["--no-access-log", "--log-level", "warning"]
        self.process = subprocess.Popen(["taskset", "-c", SERVER_CPU, *command], env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/v1/monitoring/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError("the service did not start")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


Row = tuple[str, int, str, str, str, int, int, int, bool, str, None, float, datetime, str]


def ledger_rows(count: int, keys: list[int], now: datetime) -> list[Row]:
    rng = random.Random(21)
    rows: list[Row] = []
    for i in range(count):
        provider, model = MODELS[i % 3]
        created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        rows.append(
            (
                secrets.token_hex(8) + f"{i:016x}",
                keys[rng.randrange(len(keys))],
                AGENTS[rng.randrange(4)],
                provider,
                model,
                rng.randrange(20, 2000),
                rng.randrange(10, 800),
                rng.randrange(0, 2_000_000),
                rng.random() < 0.3,
                STATUSES[rng.randrange(len(STATUSES))],
                None,
                rng.uniform(0.01, 3.0),
                created,
                secrets.token_hex(16),
            )
        )
    rows.sort(key=lambda r: r[12])  # ids in time order, as a live ledger has them
    return rows


COLUMNS = (
    "request_id, key_id, agent_type, provider, model, input_tokens, output_tokens, cost_nanodollars, cached, "
    "status, error_kind, duration_seconds, created_at, trace_id"
)
ROLLUP = (
    "INSERT INTO usage_rollups (key_id, day, agent_type, status, model, queries, input_tokens, output_tokens, "
    "cost_nanodollars, cached) SELECT key_id, {day}, agent_type, status, model, count(*), sum(input_tokens), "
    "sum(output_tokens), sum(cost_nanodollars), sum(CASE WHEN cached THEN 1 ELSE 0 END) FROM usage_records "
    "GROUP BY key_id, {day}, agent_type, status, model"
)


def history_rows(instance: str, now: int, sample: bytes) -> list[tuple[int, str, bytes]]:
    """25 hours of samples every 15 s: the stored sums of a live service, scaled to grow over the day."""
    values = json.loads(zlib.decompress(sample))
    rows = []
    start = now - 25 * 3600
    for n, at in enumerate(range(start - start % 15, now, 15)):
        scaled = {
            k: [[*r[:-1], r[-1] * (1 + n) if isinstance(r[-1], float) else r[-1]] for r in rs]
            for k, rs in values.items()
        }
        rows.append((at, instance, zlib.compress(json.dumps(scaled, separators=(",", ":")).encode(), 6)))
    return rows


def first_start(folder: Path, url: str | None) -> list[int]:
    """Create the schema and 200 keys with a first start, and one history sample of real shape."""
    first = Service(folder, url)
    admin = {"authorization": f"Bearer {ADMIN}"}
    keys = [
        httpx.post(
            f"{first.url}/api/v1/keys", json={"name": f"key-{i}", "role": "user"}, headers=admin
        ).json()["id"]
        for i in range(200)
    ]
    httpx.post(f"{first.url}/api/v1/agents/assistant/query", json={"query": "hi"}, headers=admin, timeout=30)
    time.sleep(16)
    first.stop()
    return keys


def seed_sqlite(folder: Path, rows: int) -> None:
    """Fill the ledger, its rollups (as the migration builds them) and the history."""
    keys = first_start(folder, None)
    now = datetime.now(UTC)
    data = ledger_rows(rows, keys, now)
    with contextlib.closing(sqlite3.connect(folder / "agentic.db")) as db:
        (instance, sample) = db.execute(
            "SELECT instance, data FROM metric_history ORDER BY at DESC LIMIT 1"
        ).fetchone()
        marks = ",".join("?" * 14)
        db.executemany(
            f"INSERT INTO usage_records ({COLUMNS}) VALUES ({marks})",  # noqa: S608 (constants)
            [(*r[:12], r[12].strftime("%Y-%m-%d %H:%M:%S.%f"), r[13]) for r in data],
        )
        db.execute("DELETE FROM usage_rollups")
        db.execute(ROLLUP.format(day="substr(created_at, 1, 10)"))
        db.executemany(
            "INSERT OR IGNORE INTO metric_history VALUES (?, ?, ?)",
            history_rows(instance, int(now.timestamp()), sample),
        )
        db.commit()
        db.execute("ANALYZE")


def seed_postgres(database: str, data_folder: Path, rows: int) -> str:
    url = POSTGRES + database
    keys = first_start(data_folder, url)
    now = datetime.now(UTC)
    buffer = io.StringIO()
    for r in ledger_rows(rows, keys, now):
        fields = [
            *map(str, r[:8]),
            "t" if r[8] else "f",
            str(r[9]),
            "\\N",
            str(r[11]),
            r[12].isoformat(),
            str(r[13]),
        ]
        buffer.write("\t".join(fields) + "\n")
    copy = f"\\copy usage_records ({COLUMNS}) FROM STDIN"
    subprocess.run(
        ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-c", copy],
        input=buffer.getvalue(),
        text=True,
        check=True,
    )
    psql("DELETE FROM usage_rollups", database)
    psql(ROLLUP.format(day="to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"), database)
    out = subprocess.run(
        [
            "psql",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            "SELECT instance, encode(data, 'hex') FROM metric_history ORDER BY at DESC LIMIT 1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    instance, hexdata = out.split("|")
    psql("DELETE FROM metric_history", database)
    history = io.StringIO()
    for at, inst, blob in history_rows(instance, int(now.timestamp()), bytes.fromhex(hexdata)):
        history.write(f"{at}\t{inst}\t\\\\x{blob.hex()}\n")
    subprocess.run(
        [
            "psql",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            "\\copy metric_history (at, instance, data) FROM STDIN",
        ],
        input=history.getvalue(),
        text=True,
        check=True,
    )
    psql("ANALYZE", database)
    return url


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, float]:
    client.get(path)  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def measure(store: str, rows: int, repeat: int, consoles: int) -> list[list[str]]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-console-{store}-"))
    database = f"bench_console_{secrets.token_hex(4)}"
    url = None
    if store == "postgresql":
        psql(f"CREATE DATABASE {database}")
        url = seed_postgres(database, folder, rows)
    else:
        seed_sqlite(folder, rows)
    service = Service(folder, url)
    out = []
    try:
        client = httpx.Client(base_url=service.url, timeout=60)
        client.post("/api/v1/console/session", json={"key": ADMIN}).raise_for_status()
        month = datetime.now(UTC).strftime("%Y-%m")
        first = client.get("/api/v1/usage?limit=50").json()["records"]
        deep = first[-1]["id"] // 2
        calls = [
            ("overview 1 h", "/api/v1/console/overview?range=1h", 300),
            ("overview 24 h", "/api/v1/console/overview?range=24h", 300),
            ("spend (month)", f"/api/v1/console/spend?month={month}", 300),
            ("queries: first page", "/api/v1/usage?limit=50", 100),
            (
                "queries: agent type + status",
                "/api/v1/usage?limit=50&agent_type=researcher&status=error",
                300,
            ),
            ("queries: a page half-way", f"/api/v1/usage?limit=50&before_id={deep}", 300),
        ]
        for name, path, target in calls:
            p50, p95 = timed(client, path, repeat)
            out.append(
                [store, name, f"{p50:.1f}", f"{p95:.1f}", f"{target}", "yes" if p95 < target else "NO"]
            )
        # Consoles on auto-refresh: each asks for the overview and health every 30 s. Run them 20x faster
        # for 15 s and scale the CPU back.
        speedup, seconds = 20, 15.0
        rate = consoles * 2 / 30 * speedup
        before = service.cpu_seconds()
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            client.get("/api/v1/console/overview?range=1h" if n % 2 == 0 else "/api/v1/monitoring/health")
            n += 1
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        used = (service.cpu_seconds() - before) / (time.monotonic() - started) / speedup
        out.append(
            [
                store,
                f"{consoles} consoles refreshing",
                f"{used * 100:.2f} % of a core",
                "",
                "2 %",
                "yes" if used < 0.02 else "NO",
            ]
        )
    finally:
        service.stop()
        if store == "postgresql":
            psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return out


def assets() -> tuple[int, int]:
    names = ["index.html", "app.js", "app.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"]
    raw = sum((STATIC / n).stat().st_size for n in names)
    packed = sum(len(gzip.compress((STATIC / n).read_bytes(), 9)) for n in names)
    return raw, packed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--consoles", type=int, default=10)
    args = parser.parse_args()
    results = []
    for store in args.stores.split(","):
        results += measure(store, args.rows, args.repeat, args.consoles)
        print(table(["store", "call", "p50", "p95", "target", "met"], results), flush=True)
    raw, packed = assets()
    print(f"\n{args.rows:,} ledger rows, 25 h of history; ms; the service on one core\n")
    print(table(["store", "call", "p50", "p95", "target", "met"], results))
    print(f"\nassets: {raw / 1024:.0f} KB, {packed / 1024:.0f} KB compressed (target 400 KB)")


if __name__ == "__main__":
    main()
