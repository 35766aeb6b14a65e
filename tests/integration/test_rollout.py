"""The Helm chart's rollout drill, on real processes: what ``helm template`` renders, run as a cluster runs
it (tests/kube.py), on a PostgreSQL and a Redis of the test's own.

The migration Job first (the pods' own migrate-on-start is off under the chart), then two pods behind the
Service's round robin; then a rolling update as the Deployment's strategy says (maxSurge 1,
maxUnavailable 0: start a new pod, wait for its readiness probe, delete an old one: preStop, SIGTERM)
while loadgen's mix and clients of our own send plain and streamed queries through the Service. Then
the database stops: every pod's readiness goes red, its liveness stays green (no pod would be restarted),
and all come back when it returns.

Held: no request without an answer and no 5xx but those loadgen provokes; every stream completed; the
ledger equal to what the clients received (request by request, and in tokens); old pods that exit by
themselves within their grace period.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from agentic_backend.loadgen import Stats, generate
from tests.integration.faults import PostgresCluster, RedisServer, report
from tests.integration.harness import wait_until
from tests.kube import Deployment, Kubelet, Pod, Service, render, run_job, secrets_of

pytestmark = pytest.mark.integration

ADMIN_KEY = "rollout-admin-key-" + "k" * 40
FAST_PROBES = {  # the chart's probes, on a drill's clock
    "probes": {
        "liveness": {"path": "/api/v1/monitoring/live", "periodSeconds": 1, "failureThreshold": 3},
        "readiness": {"path": "/api/v1/monitoring/ready", "periodSeconds": 1, "failureThreshold": 1},
        # The chart's budget for a start (120 s): a busy CI machine has taken more than 60 s.
        "startup": {"path": "/api/v1/monitoring/live", "periodSeconds": 1, "failureThreshold": 120},
    }
}


@dataclass
class Clients:
    """Plain and streamed agent queries through the Service from threads, one after another, until stopped;
    every answer kept (request id and tokens), every failure said."""

    url: str
    key: str
    answered: dict[str, int] = field(default_factory=dict)  # request id -> output tokens
    streams: int = 0
    failures: list[str] = field(default_factory=list)
    longest: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._run, args=(streamed,), daemon=True)
            for streamed in (False, False, True, True)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _run(self, streamed: bool) -> None:
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                body: dict[str, Any] = {"query": f"rollout {uuid.uuid4().hex}", "stream": streamed}
                started = time.monotonic()
                try:
                    done = self._stream(client, body) if streamed else self._plain(client, body)
                except (httpx.HTTPError, AssertionError, ValueError) as exc:
                    self.failures.append(f"{'stream' if streamed else 'query'}: {exc!r}")
                    continue
                self.longest = max(self.longest, time.monotonic() - started)
                self.answered[done["request_id"]] = done["tokens"]["output"]
                self.streams += streamed
                time.sleep(0.1)  # four clients, some 30 queries a second in all

    @staticmethod
    def _plain(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/api/v1/agents/assistant/query", json=body)
        assert response.status_code == 200, (response.status_code, response.text[:200])
        answer: dict[str, Any] = response.json()
        return answer

    @staticmethod
    def _stream(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
        events = []
        with client.stream("POST", "/api/v1/agents/assistant/query", json=body) as response:
            assert response.status_code == 200, response.status_code
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((event, json.loads(line.removeprefix("data: "))))
        kinds = [kind for kind, _ in events]
        assert kinds[-1:] == ["done"], f"the stream ended after {kinds[-3:]}"
        assert "delta" in kinds
        done: dict[str, Any] = events[-1][1]
        return done

    def stop(self, threads: list[threading.Thread]) -> None:
        self._stop.set()
        for thread in threads:
            thread.join(timeout=60)


def ledger(url: str, key_id: int) -> dict[str, int]:
    async def read() -> dict[str, int]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
        try:
            rows = await connection.fetch(
                "SELECT request_id, output_tokens FROM usage_records WHERE key_id = $1", key_id
            )
        finally:
            await connection.close()
        return {row["request_id"]: row["output_tokens"] for row in rows}

    return asyncio.run(read())


def test_a_rolling_update_under_load_loses_nothing_and_a_database_outage_restarts_nothing(
    tmp_path: Path,
) -> None:
    postgres = PostgresCluster()
    redis = RedisServer(tmp_path / "redis")
    service = Service()
    deployment = Deployment(service, tmp_path / "pods")
    pods: list[tuple[Pod, Kubelet]] = []
    try:
        values = {
            "databaseUrl": postgres.url,
            "redisUrl": redis.url,
            "adminApiKey": ADMIN_KEY,
            "replicaCount": 2,
            "workers": 2,
            "preStopSeconds": 6,  # longer than an idle kept-alive connection lives in httpx (5 s)
            "terminationGracePeriodSeconds": 30,
            **FAST_PROBES,
        }
        objects = render(values, tmp_path)
        secrets = secrets_of(objects)
        [job] = [obj for obj in objects if obj["kind"] == "Job"]
        [old] = [obj for obj in objects if obj["kind"] == "Deployment"]
        strategy = old["spec"]["strategy"]["rollingUpdate"]
        assert (strategy["maxSurge"], strategy["maxUnavailable"]) == (1, 0)

        migrated = run_job(job, secrets, tmp_path / "job-1")  # pre-install: before any pod exists
        assert migrated.returncode == 0, migrated.stderr
        for _ in range(old["spec"]["replicas"]):
            pods.append(deployment.create(old["spec"]["template"], secrets))
        for pod, kubelet in pods:
            deployment.wait_ready(pod, kubelet)

        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        created = httpx.post(
            f"{service.url}/api/v1/keys", json={"name": "rollout", "role": "user"}, headers=admin, timeout=10
        ).json()
        clients = Clients(service.url, created["key"])
        stats, stop = Stats(), threading.Event()

        def load() -> None:  # rounds of loadgen's mix until the rollout is over
            while not stop.is_set():
                asyncio.run(generate(service.url, ADMIN_KEY, 25, 4, quiet=True, stats=stats))

        loadgen = threading.Thread(target=load, daemon=True)
        loadgen.start()
        threads = clients.start()
        time.sleep(2)

        # The upgrade: a changed pod template (as a new image would be); its pre-upgrade Job first.
        new = render({**values, "podAnnotations": {"release": "2"}}, tmp_path)
        [template] = [obj["spec"]["template"] for obj in new if obj["kind"] == "Deployment"]
        [job] = [obj for obj in new if obj["kind"] == "Job"]
        migrated = run_job(job, secrets_of(new), tmp_path / "job-2")  # while the old pods serve
        assert migrated.returncode == 0, migrated.stderr
        rollout_started = time.monotonic()
        old_pods, ready_after = list(pods), []
        for old_pod, old_kubelet in old_pods:
            surge = deployment.create(template, secrets_of(new))
            pods.append(surge)
            born = time.monotonic()
            deployment.wait_ready(*surge)
            ready_after.append(time.monotonic() - born)
            deployment.delete(old_pod, old_kubelet)
            pods.remove((old_pod, old_kubelet))
        rollout_seconds = time.monotonic() - rollout_started
        time.sleep(1)
        clients.stop(threads)
        stop.set()
        loadgen.join(timeout=120)
        assert not loadgen.is_alive()

        served = {
            k: v for k, v in stats.outcomes.items() if k[1] == 0 or (k[1] >= 500 and k[0] != "provider error")
        }
        report(
            "rolling update under load",
            {
                "rollout seconds": f"{rollout_seconds:.1f}",
                "our queries answered": len(clients.answered),
                "of them streamed": clients.streams,
                "failures": clients.failures[:5],
                "loadgen requests": sum(stats.outcomes.values()),
                "loadgen without an answer or 5xx": served,
                "what they met": dict(stats.errors),
                "longest pause a client saw (s)": f"{clients.longest:.2f}",
                "loadgen's longest (s)": f"{max(max(v) for v in stats.latencies.values()):.2f}",
                "new pods ready after (s)": [f"{seconds:.1f}" for seconds in ready_after],
                "old pods exited after (s)": [f"{p.exit_seconds:.1f}" for p, _ in old_pods],
                "connections per pod": service.connections,
                "refused by the Service": service.refused,
            },
        )
        assert clients.failures == []
        assert served == {}, (stats.outcomes, stats.errors)
        assert clients.streams >= 10
        assert len(clients.answered) - clients.streams >= 10
        assert sum(stats.outcomes.values()) >= 10 * rollout_seconds
        for pod, _ in old_pods:
            assert not pod.killed, f"{pod.name} outlived its grace period:\n{pod.process.log()}"
            assert pod.process.popen.returncode == 0, pod.process.log()
        # Every pod served: the new ones took over through the Service.
        assert all(service.connections.get(pod.name, 0) > 0 for pod, _ in [*old_pods, *pods])
        assert ledger(postgres.url, created["id"]) == clients.answered

        # A database outage: readiness goes red everywhere, liveness stays green: nothing is restarted.
        postgres.stop()
        outage = time.monotonic()
        wait_until(lambda: not any(k.ready for _, k in pods), timeout=15, what="readiness to go red")
        time.sleep(3)  # liveness probes keep passing
        postgres.start()
        for pod, kubelet in pods:
            deployment.wait_ready(pod, kubelet, timeout=30)
        recovered = time.monotonic() - outage
        for pod, kubelet in pods:
            assert kubelet.failures("liveness") == 0, kubelet.outcomes
            assert kubelet.failures("readiness") >= 1
            assert pod.process.alive()
        report("database outage", {"red then green again after (s)": f"{recovered:.1f}"})
    finally:
        for pod, kubelet in pods:
            kubelet.stop()
            pod.process.stop()
        service.close()
        redis.stop()
        postgres.destroy()
