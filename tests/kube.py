"""The Helm chart's objects, rendered by ``helm template`` and run as a cluster runs them, on one machine.

- A **pod** is the rendered container's command, args and env (Secrets resolved from the rendered ones),
  run as a process: each volume mount a folder of its own, the container port a free loopback port.
- A **kubelet** thread probes each pod as its startup, liveness and readiness probes say (path, period,
  failure threshold, timeout), and deletes a pod as the kubelet does: its preStop hook run in the
  container's environment, then SIGTERM to the container's first process, SIGKILL at the end of the
  grace period.
- A **Service** proxies each new TCP connection, round robin, to the pods that are ready and not being
  deleted, as kube-proxy does (a deleted pod leaves the endpoints a little later: ``lag``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.helpers import ROOT, missing
from tests.integration.harness import LOOPBACK, Process, free_port, wait_until

CHART = ROOT / "deploy" / "helm" / "agentic-backend"


def helm() -> str:
    found = ROOT / ".tools" / "bin" / "helm"
    if found.exists():
        return str(found)
    path = shutil.which("helm")
    if path is None:
        missing("helm is not installed (scripts/bootstrap.sh all fetches it into .tools/bin)")
    return path


def run_helm(*args: str, values: dict[str, Any] | None = None, tmp_path: Path, check: bool = True) -> str:
    command = [helm(), *args]
    if values is not None:
        file = tmp_path / "values.yaml"
        file.write_text(yaml.safe_dump(values))
        command += ["-f", str(file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout + done.stderr


def render(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    text = run_helm("template", "rel", str(CHART), "--namespace", "agents", values=values, tmp_path=tmp_path)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def secrets_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    found = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
            found[obj["metadata"]["name"]] = {**data, **obj.get("stringData", {})}
    return found


@dataclass(frozen=True)
class Probe:
    path: str
    period: float
    failure_threshold: int
    timeout: float

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Probe:
        return cls(
            spec["httpGet"]["path"],
            spec.get("periodSeconds", 10),
            spec.get("failureThreshold", 3),
            spec.get("timeoutSeconds", 1),
        )


@dataclass(frozen=True)
class Container:
    """The first container of a pod template, as the kubelet reads it."""

    command: list[str]
    env: dict[str, str]
    mounts: list[str]
    port: int | None
    probes: dict[str, Probe]
    pre_stop: list[str] | None
    grace_seconds: float

    @classmethod
    def of(cls, template: dict[str, Any], secrets: dict[str, dict[str, str]]) -> Container:
        spec = template["spec"]
        container = spec["containers"][0]
        env = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            if value is None:
                assert ref.get("optional"), f"{item['name']}: Secret {ref['name']} has no key {ref['key']}"
                continue
            env[item["name"]] = value
        ports = container.get("ports", [])
        hook = container.get("lifecycle", {}).get("preStop", {}).get("exec")
        return cls(
            command=[*container["command"], *container.get("args", [])],
            env=env,
            mounts=[m["mountPath"] for m in container.get("volumeMounts", [])],
            port=ports[0]["containerPort"] if ports else None,
            probes={
                kind: Probe.of(container[f"{kind}Probe"])
                for kind in ("startup", "liveness", "readiness")
                if f"{kind}Probe" in container
            },
            pre_stop=hook["command"] if hook else None,
            grace_seconds=spec.get("terminationGracePeriodSeconds", 30),
        )


def _environment(container: Container, workdir: Path) -> dict[str, str]:
    """The container's env with every path under a volume mount moved into that volume's folder (made
    under ``workdir``)."""
    volumes = {m: workdir / "volumes" / m.strip("/").replace("/", "-") for m in container.mounts}
    for folder in volumes.values():
        folder.mkdir(parents=True, exist_ok=True)

    def remap(value: str) -> str:
        for mount in sorted(volumes, key=len, reverse=True):
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(volumes[mount]) + value[len(mount.rstrip("/")) :]
        return value

    return {name: remap(value) for name, value in container.env.items()}


def _executable(name: str) -> str:
    """The image's commands: the project's console script from this venv, anything else from PATH."""
    own = Path(sys.executable).parent / name
    found = str(own) if own.exists() else shutil.which(name)
    assert found, f"{name} is not installed"
    return found


class Pod:
    """A pod's container as a process, its volumes as folders, its port a free loopback port."""

    def __init__(self, name: str, container: Container, workdir: Path) -> None:
        self.name = name
        self.container = container
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.env = _environment(container, workdir)
        self.workdir = workdir
        self.terminating_since: float | None = None
        self.killed = False
        self.exit_seconds: float | None = None  # from the deletion to the process' exit
        args = [self._arg(arg) for arg in container.command[1:]]
        self.process = Process(name, [_executable(container.command[0]), *args], workdir, self.env)

    def _arg(self, arg: str) -> str:
        if arg == "--host=0.0.0.0":
            return f"--host={LOOPBACK}"
        if self.container.port is not None and arg == f"--port={self.container.port}":
            return f"--port={self.port}"
        return arg

    def probe(self, probe: Probe) -> bool:
        try:
            status = httpx.get(f"{self.url}{probe.path}", timeout=probe.timeout).status_code
        except httpx.HTTPError:
            return False
        return 200 <= status < 400


@dataclass(eq=False)
class Kubelet:
    """Probes one pod on the schedule of its probes, from a thread, and records every outcome."""

    pod: Pod
    started: bool = False
    ready: bool = False
    startup_failed: bool = False
    outcomes: list[tuple[float, str, bool]] = field(default_factory=list)  # (time, probe, passed)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"kubelet-{self.pod.name}")
        self._thread.start()

    def failures(self, probe: str) -> int:
        return sum(1 for _, kind, passed in self.outcomes if kind == probe and not passed)

    def _check(self, kind: str) -> bool:
        passed = self.pod.probe(self.pod.container.probes[kind])
        self.outcomes.append((time.monotonic(), kind, passed))
        return passed

    def _run(self) -> None:
        probes = self.pod.container.probes
        if "startup" in probes:
            failed = 0
            while not self._check("startup"):
                failed += 1
                if failed >= probes["startup"].failure_threshold or self._stop.wait(probes["startup"].period):
                    self.startup_failed = True
                    return
        self.started = True
        due = dict.fromkeys(("liveness", "readiness"), time.monotonic())
        failed_in_a_row = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if "liveness" in probes and now >= due["liveness"]:
                self._check("liveness")
                due["liveness"] = now + probes["liveness"].period
            if "readiness" in probes and now >= due["readiness"]:
                if self._check("readiness"):
                    self.ready, failed_in_a_row = True, 0
                else:
                    failed_in_a_row += 1
                    if failed_in_a_row >= probes["readiness"].failure_threshold:
                        self.ready = False
                due["readiness"] = now + probes["readiness"].period
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Service:
    """kube-proxy for one Service: every new connection to the next ready pod that is not being deleted;
    a deleted pod leaves the endpoints ``lag`` seconds after its deletion starts."""

    def __init__(self, *, lag: float = 0.5) -> None:
        self.lag = lag
        self.pods: list[tuple[Pod, Kubelet]] = []
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.refused = 0  # connections that found no endpoint
        self.connections: dict[str, int] = {}
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True, name="kube-proxy")
        self._thread.start()
        assert ready.wait(10), "the Service's proxy did not start"

    def endpoints(self) -> list[Pod]:
        now = time.monotonic()
        return [
            pod
            for pod, kubelet in list(self.pods)
            if kubelet.ready and (pod.terminating_since is None or now - pod.terminating_since < self.lag)
        ]

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connect, LOOPBACK, self.port))
        ready.set()
        self._loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        endpoints = self.endpoints()
        if not endpoints:
            self.refused += 1
            writer.close()
            return
        pod = endpoints[next(self._turn) % len(endpoints)]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, pod.port)
        except OSError:
            self.refused += 1
            writer.close()
            return
        self.connections[pod.name] = self.connections.get(pod.name, 0) + 1
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def run_job(
    job: dict[str, Any], secrets: dict[str, dict[str, str]], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """A Job's pod run to completion (one attempt), within its activeDeadlineSeconds."""
    container = Container.of(job["spec"]["template"], secrets)
    env = _environment(container, workdir)
    return subprocess.run(
        [_executable(container.command[0]), *container.command[1:]],
        env={**os.environ, **env},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=job["spec"].get("activeDeadlineSeconds", 600),
        check=False,
    )


class Deployment:
    """A Deployment's pods on one machine: created from a pod template, probed, and deleted as the kubelet
    deletes them."""

    def __init__(self, service: Service, workdir: Path) -> None:
        self.service = service
        self.workdir = workdir
        self._names = itertools.count(1)

    def create(self, template: dict[str, Any], secrets: dict[str, dict[str, str]]) -> tuple[Pod, Kubelet]:
        name = f"pod-{next(self._names)}"
        pod = Pod(name, Container.of(template, secrets), self.workdir / name)
        kubelet = Kubelet(pod)
        self.service.pods.append((pod, kubelet))
        return pod, kubelet

    def wait_ready(self, pod: Pod, kubelet: Kubelet, timeout: float | None = None) -> None:
        """Until the kubelet finds the pod ready. By default the kubelet's startup probe decides how long a
        start may take (its budget, then a fail), not a deadline of the test's."""
        if timeout is None:
            startup = pod.container.probes.get("startup")
            budget = startup.failure_threshold * (startup.period + startup.timeout) if startup else 60
            timeout = budget + 30

        def ready() -> bool:
            assert not kubelet.startup_failed, f"{pod.name}'s startup probe failed:\n{pod.process.log()}"
            assert pod.process.alive(), f"{pod.name} exited:\n{pod.process.log()}"
            return kubelet.ready

        wait_until(ready, timeout=timeout, what=f"{pod.name} to be ready")

    def delete(self, pod: Pod, kubelet: Kubelet) -> None:
        """Out of the endpoints (after the proxy's lag), the preStop hook, SIGTERM, SIGKILL at the end of
        the grace period; returns once the process has exited."""
        started = pod.terminating_since = time.monotonic()
        deadline = started + pod.container.grace_seconds
        if pod.container.pre_stop:
            hook = pod.container.pre_stop
            subprocess.run(
                [_executable(hook[0]), *hook[1:]],
                env={**os.environ, **pod.env},
                cwd=pod.workdir,
                timeout=max(0.1, deadline - time.monotonic()),
                check=False,
            )
        pod.process.popen.send_signal(signal.SIGTERM)  # the container's first process, as the kubelet does
        try:
            pod.process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pod.killed = True
        pod.exit_seconds = time.monotonic() - started
        pod.process.stop(signal.SIGKILL)  # the rest of its group, if anything is left
        kubelet.stop()
        self.service.pods.remove((pod, kubelet))
