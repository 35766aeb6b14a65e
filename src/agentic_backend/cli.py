"""The ``agentic-backend`` command."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from agentic_backend.core.clock import SystemClock
from agentic_backend.core.config import Settings
from agentic_backend.core.db import Database, upgrade
from agentic_backend.core.errors import AppError
from agentic_backend.core.httpguard import PROTOCOL
from agentic_backend.core.logs import uvicorn_log_config
from agentic_backend.identity.service import KeyService

# Plain help (click's): it wraps at any width, where rich's boxed tables cut option names at 80 columns.
app = typer.Typer(
    help="Agentic Backend: LLM agents with production monitoring built in.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
T = TypeVar("T")


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def _with_keys(action: Callable[[KeyService], Awaitable[T]], *, migrate: bool = True) -> T:
    """Migrate (unless ``migrate`` is False), then run ``action`` against the key service; an AppError
    becomes a clean exit 1."""
    settings = _settings()
    if migrate:
        upgrade(settings.resolved_database_url)

    async def run() -> T:
        database = Database(settings.resolved_database_url, timeout=settings.database_timeout_seconds)
        try:
            return await action(KeyService(database, SystemClock()))
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except AppError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from None


@app.callback()
def main() -> None:
    """Agentic Backend: LLM agents with production monitoring built in."""


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; metrics are summed over all.")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info or debug.")] = "info",
    proxy_headers: Annotated[
        bool,
        typer.Option(
            help="Behind a reverse proxy: take the client's address from X-Forwarded-For (and the scheme "
            "from X-Forwarded-Proto) when the peer is one of --forwarded-allow-ips, so that the brute-force "
            "guard counts the client, not the proxy. Off by default: without a proxy, any client could "
            "name any address."
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            help="With --proxy-headers: comma-separated proxy addresses or networks trusted for proxy "
            "headers ('*' for any: only if nothing but the proxy can reach the service)."
        ),
    ] = "127.0.0.1",
    timeout_keep_alive: Annotated[
        int, typer.Option(min=1, help="Seconds an idle kept-alive connection stays open.")
    ] = 5,
    limit_concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            help="Connections (and requests) one worker takes at once; past it new requests get 503.",
        ),
    ] = 1024,
) -> None:
    """Run the API server (settings come from AGENTIC_* environment variables)."""
    settings = _settings()
    _before_serving(settings, workers)
    # Each worker publishes its metrics in a folder of the run; one scrape of any worker reports the sum.
    folder = _claim_metrics_folder() if workers > 1 else None
    try:
        json_logs = settings.log_format == "json"  # the app logs each request itself (core/logs.py)
        uvicorn.run(
            "agentic_backend.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log and not json_logs,
            log_config=uvicorn_log_config(json_logs, access_log=access_log) or uvicorn.config.LOGGING_CONFIG,
            log_level=log_level,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            # httptools with bounds on the head, its time and the body's pace (core/httpguard.py).
            http=PROTOCOL,
            timeout_keep_alive=timeout_keep_alive,
            limit_concurrency=limit_concurrency,
        )
    finally:
        if folder is not None:
            from agentic_backend.metricstore.rundir import release_run_folder

            release_run_folder(folder)


def _before_serving(settings: Settings, workers: int) -> None:
    """Refuse a tracing configuration that cannot work, migrate (AGENTIC_MIGRATE_ON_START) and create the
    first admin key once (here, rather than racing in every worker), and warn of more workers than CPUs."""
    from agentic_backend.core.tracing import TracingConfigError, check_tracing_config

    try:
        check_tracing_config()
    except TracingConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    if settings.drain_file is not None:  # left by a stop that never finished (the container restarted)
        settings.drain_file.unlink(missing_ok=True)
    # AGENTIC_MIGRATE_ON_START=false (the Helm chart: its Job migrates once per release, before pods roll).
    admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    _with_keys(lambda keys: keys.ensure_admin(admin), migrate=settings.migrate_on_start)
    cpus = usable_cpus()
    if workers > cpus:
        typer.echo(
            f"warning: --workers {workers} on {cpus:g} CPU(s): workers beyond the CPUs add no capacity, "
            "and each request may wait for the CPU while the other workers run (event_loop_lag_seconds "
            "shows it); use at most one worker per CPU",
            err=True,
        )


def _claim_metrics_folder() -> Path:
    from agentic_backend.metricstore.rundir import claim_run_folder

    configured = os.environ.get("AGENTIC_METRICS_MULTIPROCESS_DIR")
    folder = claim_run_folder(Path(configured) if configured else None)
    os.environ["AGENTIC_METRICS_MULTIPROCESS_DIR"] = str(folder)
    return folder


def usable_cpus() -> float:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2 quota (a container's
    CPU limit) when one is set."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cpus
    return min(cpus, int(quota) / int(period)) if quota != "max" else cpus


@db_app.command("upgrade")
def db_upgrade(
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the database to accept connections first.")
    ] = 0.0,
) -> None:
    """Apply every pending migration (start-up does this too, unless AGENTIC_MIGRATE_ON_START=false).
    Safe to run concurrently (PostgreSQL: an advisory lock); exits 1 when a migration fails."""
    settings = _settings()
    deadline = time.monotonic() + wait
    while True:
        try:
            upgrade(settings.resolved_database_url)
            break
        except Exception as exc:  # the database not up yet, or a migration that failed
            if time.monotonic() >= deadline or not _unreachable(exc):
                first = str(exc).splitlines()[0][:300] if str(exc) else ""
                Console(stderr=True).print(
                    f"[red]error:[/red] migration failed: {type(exc).__name__}: {first}"
                )
                raise typer.Exit(1) from None
            time.sleep(1)
    typer.echo("database is up to date")


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database does not accept connections yet (worth waiting for)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        sign in text for sign in ("connect", "refused", "could not translate", "timeout", "starting up")
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A unique name.")],
    role: Annotated[str, typer.Option(help="admin, operator, user or viewer.")] = "user",
) -> None:
    """Create a key and print its secret (shown this once)."""
    created = _with_keys(lambda keys: keys.create(name, role))
    Console(stderr=True).print(
        f"created key {created.id} '{created.name}' ({created.role}); its secret, shown once:"
    )
    print(created.key)  # alone on stdout, so that scripts can capture it


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    rows = _with_keys(lambda keys: keys.list())
    table = Table("id", "name", "role", "created", "revoked")
    for row in rows:
        table.add_row(
            str(row.id),
            row.name,
            row.role,
            f"{row.created_at:%Y-%m-%d %H:%M}",
            f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id or name.")]) -> None:
    """Revoke a key: it is refused from the next request on."""
    target: int | str = int(key) if key.isdigit() else key
    revoked = _with_keys(lambda keys: keys.revoke(target))
    Console(stderr=True).print(f"revoked key {revoked.id} '{revoked.name}'")


@app.command("sim-llm")
def sim_llm(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    latency_ms: Annotated[float, typer.Option(help="Simulated latency per call.")] = 0.0,
    failure_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of calls that fail (500).")] = 0.0,
    tokens_per_second: Annotated[
        float, typer.Option(min=0, help="How fast streamed answers come (0: at once).")
    ] = 0.0,
) -> None:
    """Serve the sim provider over HTTP in OpenAI's and Anthropic's wire formats (/v1/chat/completions,
    /v1/messages): point AGENTIC_OPENAI_BASE_URL at http://HOST:PORT/v1 or AGENTIC_ANTHROPIC_BASE_URL at
    http://HOST:PORT."""
    from agentic_backend.llm.sim import SimProvider
    from agentic_backend.llm.sim_server import create_sim_server

    sim = SimProvider(latency_ms=latency_ms, failure_rate=failure_rate, tokens_per_second=tokens_per_second)
    server = create_sim_server(sim)
    # A test double: stopping it does not wait for the requests it holds on purpose (#fail:timeout).
    uvicorn.run(
        server, host=host, port=port, access_log=False, log_level="warning", timeout_graceful_shutdown=1
    )


@app.command()
def loadgen(
    url: Annotated[str, typer.Option(help="The service's base URL.")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str, typer.Option(envvar="AGENTIC_LOADGEN_API_KEY", help="An admin key (or any key).")
    ] = "",
    rate: Annotated[float, typer.Option(min=0.1, help="Requests per second.")] = 20.0,
    duration: Annotated[float, typer.Option(min=1, help="Seconds to run.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Random seed of the mix.")] = 1,
) -> None:
    """Send a realistic mix of traffic (see agentic_backend.loadgen) and print what came back."""
    from agentic_backend.loadgen import LoadgenError, generate, report

    if not api_key:
        raise typer.BadParameter(
            "give --api-key (or AGENTIC_LOADGEN_API_KEY); an admin key exercises everything"
        )
    try:
        stats = asyncio.run(generate(url, api_key, rate, duration, seed=seed))
    except LoadgenError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    report(stats, Console())


stack_app = typer.Typer(
    help="The monitoring stack of monitoring/ without Docker: Prometheus, Alertmanager, Grafana.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
_RUN_DIR = Path(".stack")


@stack_app.command("up")
def stack_up(
    api: Annotated[
        str,
        typer.Option(
            help="HOST:PORT of the running API to scrape; replicas comma-separated (HOST:PORT,HOST:PORT)."
        ),
    ] = "127.0.0.1:8000",
    config_dir: Annotated[Path, typer.Option(help="The monitoring/ folder to run.")] = Path("monitoring"),
    run_dir: Annotated[Path, typer.Option(help="Where copies, data and logs go.")] = _RUN_DIR,
    prometheus_port: int = 9090,
    alertmanager_port: int = 9093,
    grafana_port: int = 3000,
) -> None:
    """Start Prometheus, Alertmanager and Grafana (when installed) on loopback, and print their URLs.

    The API's metrics token, if it protects /metrics, is read from AGENTIC_METRICS_TOKEN."""
    from agentic_backend import stack

    token = os.environ.get("AGENTIC_METRICS_TOKEN", "")
    options = stack.StackOptions(
        source=config_dir,
        run_dir=run_dir,
        api=api,
        prometheus_port=prometheus_port,
        alertmanager_port=alertmanager_port,
        grafana_port=grafana_port,
        metrics_token=token,
    )
    try:
        running = stack.up(options)
    except stack.StackError as exc:
        raise typer.BadParameter(str(exc)) from None
    table = Table("component", "URL", "log")
    for component in running.components:
        table.add_row(component.name, component.url, component.log)
    console = Console()
    console.print(table)
    if not any(component.name == "grafana" for component in running.components):
        console.print("grafana-server is not installed: Grafana was skipped (docker compose runs it).")
    console.print(f"Scraping {api} at /api/v1/monitoring/metrics. Stop with: agentic-backend stack down")
    urls = {c.name: c.url for c in running.components}
    if "prometheus" in urls:  # the console's charts and alerts read these (README: Console)
        settings = f"AGENTIC_PROMETHEUS_URL={urls['prometheus']}"
        if "alertmanager" in urls:
            settings += f" AGENTIC_ALERTMANAGER_URL={urls['alertmanager']}"
        console.print(
            f"For the console's charts and alerts, start the service with: {settings}", soft_wrap=True
        )


@stack_app.command("down")
def stack_down(
    run_dir: Annotated[Path, typer.Option(help="The folder `stack up` used.")] = _RUN_DIR,
) -> None:
    """Stop what `stack up` started."""
    from agentic_backend import stack

    try:
        stopped = stack.down(run_dir)
    except stack.StackError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("hash-password")
def stack_hash_password(
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Asked when not given."),
    ],
) -> None:
    """Print the bcrypt hash of a password for basic_auth_users in monitoring/web-config.yml."""
    import bcrypt

    if len(password) < 12:
        raise typer.BadParameter("use at least 12 characters")
    typer.echo(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode())
