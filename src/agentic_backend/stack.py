"""``agentic-backend stack up|down``: the monitoring stack of ``monitoring/`` without Docker.

The same files as docker-compose.yml uses, run by the locally installed ``prometheus``,
``prometheus-alertmanager`` and (when present) ``grafana-server``. The files are copied into a run folder
with the compose host names rewritten to loopback (``api:8000`` → the API's address, ``alertmanager:9093``
→ the local Alertmanager) and the scrape token written where ``prometheus.yml`` reads it. The processes
run detached; their ids are kept in ``stack.json`` of the run folder so that ``stack down`` stops them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

LOOPBACK = "127.0.0.1"
JOB = "agentic-backend"
STATE_FILE = "stack.json"
# The webhook receivers of monitoring/alertmanager.yml point here (Alertmanager's example receiver port).
DEFAULT_RECEIVER_BASE = "http://127.0.0.1:5001"


# Processes this interpreter started, kept so that they are reaped here (``stack down`` from another shell
# finds them by pid instead).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """The stack cannot be started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class StackOptions:
    source: Path  # the monitoring/ folder
    run_dir: Path
    api: str = f"{LOOPBACK}:8000"  # several, comma-separated: replicas, scraped through file discovery
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    grafana_port: int = 3000
    metrics_token: str = ""
    receiver_base: str | None = None  # replaces DEFAULT_RECEIVER_BASE in the webhook receivers
    prometheus_args: tuple[str, ...] = ()
    # Tests only: scrape and evaluate every second, fire alerts without waiting out their ``for``, and
    # notify without grouping delays. The expressions themselves are unchanged.
    fast: bool = False


@dataclass(slots=True)
class Component:
    name: str
    url: str
    pid: int
    log: str


@dataclass(slots=True)
class RunningStack:
    run_dir: Path
    components: list[Component] = field(default_factory=list)

    def url(self, name: str) -> str:
        return next(component.url for component in self.components if component.name == name)

    def save(self) -> None:
        state = {"components": [asdict(component) for component in self.components]}
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> RunningStack:
        path = run_dir / STATE_FILE
        if not path.exists():
            raise StackError(f"no stack is running from {run_dir} (no {STATE_FILE})")
        state = json.loads(path.read_text())
        return cls(run_dir, [Component(**component) for component in state["components"]])


def _rewrite_prometheus(config_dir: Path, options: StackOptions, alertmanager: str) -> None:
    path = config_dir / "prometheus.yml"
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    targets = [target.strip() for target in options.api.split(",") if target.strip()]
    for job in config["scrape_configs"]:
        if job["job_name"] == JOB:
            if len(targets) == 1:
                job["static_configs"] = [{"targets": targets}]
            else:  # replicas: through file-based discovery, as targets/replicas.json.example shows
                job.pop("static_configs", None)
                folder = config_dir / "targets"
                folder.mkdir(exist_ok=True)
                (folder / "replicas.json").write_text(json.dumps([{"targets": targets}], indent=2))
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    if options.fast:
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        for rule_file in [*config_dir.glob("alerts/*.yml"), *config_dir.glob("rules/*.yml")]:
            rules: dict[str, Any] = yaml.safe_load(rule_file.read_text())
            for group in rules["groups"]:
                for rule in group["rules"]:
                    if "for" in rule:
                        rule["for"] = "0s"
            rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets = config_dir / "secrets"
    secrets.mkdir(exist_ok=True)
    token = secrets / "metrics_token"
    token.write_text(options.metrics_token)
    token.chmod(0o600)


def _rewrite_alertmanager(config_dir: Path, options: StackOptions) -> None:
    path = config_dir / "alertmanager.yml"
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    if options.receiver_base is not None:
        for receiver in config["receivers"]:
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = webhook["url"].replace(DEFAULT_RECEIVER_BASE, options.receiver_base)
    if options.fast:
        routes = [config["route"], *config["route"].get("routes", [])]
        for route in routes:
            route.update(group_wait="1s", group_interval="2s")
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def prepare(options: StackOptions) -> Path:
    """Copy monitoring/ into the run folder with loopback addresses; returns the copied folder."""
    if not (options.source / "prometheus.yml").exists():
        raise StackError(
            f"{options.source} holds no prometheus.yml: pass --config-dir (the repo's monitoring/)"
        )
    config_dir = options.run_dir / "monitoring"
    shutil.rmtree(config_dir, ignore_errors=True)
    shutil.copytree(
        options.source, config_dir, ignore=shutil.ignore_patterns("secrets", "*.py", "__pycache__")
    )
    _rewrite_prometheus(config_dir, options, f"{LOOPBACK}:{options.alertmanager_port}")
    _rewrite_alertmanager(config_dir, options)
    return config_dir


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _spawn(name: str, args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    log = run_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            cwd=run_dir,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return process.pid, str(log)


def _wait_ready(url: str, pid: int, log: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise StackError(
                f"{url} exited at start-up; its log ({log}) ends:\n{Path(log).read_text()[-2000:]}"
            )
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StackError(f"{url} did not answer within {timeout:g} s; see {log}")


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)  # started by another `stack up`: probe it
    except ProcessLookupError:
        return False
    return True


def _binary(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name)) is not None), None)


def up(options: StackOptions) -> RunningStack:
    """Start Prometheus, Alertmanager and (if installed) Grafana; stop what started if one fails."""
    options = replace(options, source=options.source.resolve(), run_dir=options.run_dir.resolve())
    prometheus = _binary("prometheus")
    alertmanager = _binary("prometheus-alertmanager", "alertmanager")
    if prometheus is None or alertmanager is None:
        raise StackError(
            "install Prometheus and Alertmanager first: apt-get install prometheus prometheus-alertmanager"
        )
    if (options.run_dir / STATE_FILE).exists():
        raise StackError(
            f"a stack already runs from {options.run_dir}: run `agentic-backend stack down` first"
        )
    for port in (options.prometheus_port, options.alertmanager_port):
        if not _port_free(port):
            raise StackError(f"port {port} is taken: choose another with the --*-port options")
    options.run_dir.mkdir(parents=True, exist_ok=True)
    config_dir = prepare(options)
    stack = RunningStack(options.run_dir)
    try:
        am_url = f"http://{LOOPBACK}:{options.alertmanager_port}"
        pid, log = _spawn(
            "alertmanager",
            [
                alertmanager,
                f"--config.file={config_dir / 'alertmanager.yml'}",
                f"--storage.path={options.run_dir / 'alertmanager-data'}",
                f"--web.listen-address={LOOPBACK}:{options.alertmanager_port}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ],
            options.run_dir,
        )
        stack.components.append(Component("alertmanager", am_url, pid, log))
        stack.save()
        _wait_ready(f"{am_url}/-/ready", pid, log)

        prom_url = f"http://{LOOPBACK}:{options.prometheus_port}"
        pid, log = _spawn(
            "prometheus",
            [
                prometheus,
                f"--config.file={config_dir / 'prometheus.yml'}",
                f"--web.config.file={config_dir / 'web-config.yml'}",
                f"--storage.tsdb.path={options.run_dir / 'prometheus-data'}",
                "--storage.tsdb.retention.time=30d",
                "--storage.tsdb.retention.size=10GB",
                f"--web.listen-address={LOOPBACK}:{options.prometheus_port}",
                "--web.enable-lifecycle",
                # Test mode: alerts evaluated before Alertmanager was discovered are resent within seconds.
                *(["--rules.alert.resend-delay=2s"] if options.fast else []),
                *options.prometheus_args,
            ],
            options.run_dir,
        )
        stack.components.append(Component("prometheus", prom_url, pid, log))
        stack.save()
        _wait_ready(f"{prom_url}/-/ready", pid, log)

        grafana = _binary("grafana-server", "grafana")
        if grafana is not None:
            stack.components.append(_start_grafana(grafana, config_dir, options, prom_url))
            stack.save()
    except BaseException:
        down(options.run_dir)
        raise
    return stack


def _start_grafana(binary: str, config_dir: Path, options: StackOptions, prometheus_url: str) -> Component:
    provisioning = options.run_dir / "grafana-provisioning"
    shutil.rmtree(provisioning, ignore_errors=True)
    shutil.copytree(config_dir / "grafana", provisioning, ignore=shutil.ignore_patterns("*.py"))
    (provisioning / "plugins").mkdir(exist_ok=True)
    (provisioning / "alerting").mkdir(exist_ok=True)
    provider = provisioning / "dashboards" / "dashboards.yml"
    provider.write_text(
        provider.read_text().replace("/etc/grafana/provisioning/dashboards", str(provisioning / "dashboards"))
    )
    home = Path("/usr/share/grafana")
    args = [binary, "server"] if binary.endswith("/grafana") else [binary]
    args += [f"--homepath={home}"] if home.exists() else []
    env = {
        "GF_PATHS_PROVISIONING": str(provisioning),
        "GF_PATHS_DATA": str(options.run_dir / "grafana-data"),
        "GF_PATHS_LOGS": str(options.run_dir),
        "GF_SERVER_HTTP_ADDR": LOOPBACK,
        "GF_SERVER_HTTP_PORT": str(options.grafana_port),
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_SECURITY_ADMIN_PASSWORD": os.environ.get("GRAFANA_PASSWORD", "admin"),
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "PROMETHEUS_URL": prometheus_url,
        "PROMETHEUS_USER": os.environ.get("PROMETHEUS_USER", "admin"),
        "PROMETHEUS_PASSWORD": os.environ.get("PROMETHEUS_PASSWORD", ""),
    }
    pid, log = _spawn("grafana", args, options.run_dir, env)
    url = f"http://{LOOPBACK}:{options.grafana_port}"
    _wait_ready(f"{url}/api/health", pid, log, timeout=60)
    return Component("grafana", url, pid, log)


def down(run_dir: Path, timeout: float = 15) -> list[str]:
    """Stop every process the stack of ``run_dir`` started; returns their names."""
    stack = RunningStack.load(run_dir)
    stopped = []
    for component in reversed(stack.components):
        try:
            os.killpg(component.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while _alive(component.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(component.pid):
            os.killpg(component.pid, signal.SIGKILL)
        child = _CHILDREN.pop(component.pid, None)
        if child is not None:
            child.wait()
        stopped.append(component.name)
    (run_dir / STATE_FILE).unlink()
    return stopped
