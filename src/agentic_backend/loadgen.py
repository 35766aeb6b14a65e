"""``agentic-backend loadgen``: realistic traffic, so that every dashboard panel has data within a minute.

The mix: stateless agent queries over every agent type (some repeated, so the cache hits, some new, so it
misses, some streamed as Server-Sent Events), chat completions through the OpenAI-compatible face,
conversations in sessions, provider errors forced through ``sim`` directives, requests with a bad key
(authentication failures), requests a viewer key may not make (permission denials), summary reads, health
checks and custom metrics. With an admin key it creates the user and viewer keys it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

QUESTIONS = (
    "What is the request rate?",
    "How is the error ratio computed?",
    "What does the cache save?",
    "What is 17*23+4?",
    "How do budgets work?",
    "What is (1024-24)/8?",
    "Explain token usage per model.",
    "How are sessions kept?",
)
FAILURES = ("#fail:server", "#fail:rate_limit", "#fail:timeout", "#fail:bad_response")


class LoadgenError(Exception):
    """The service cannot be driven (unreachable, refusing the key): one line for the person who ran it."""


@dataclass
class Stats:
    outcomes: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # what the requests without an answer met
    latencies: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's own CPU time while it sent the traffic
    late_starts: int = 0  # requests sent more than 10 ms after their turn (the generator fell behind)
    # With keep_answers: (seconds since the start when sent, kind, status, latency) of every answer.
    keep_answers: bool = False
    answers: list[tuple[float, str, int, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.outcomes[(kind, status)] += 1
        self.latencies.setdefault((kind, status), []).append(seconds)
        if self.keep_answers:
            self.answers.append((time.monotonic() - self.started - seconds, kind, status, seconds))

    @property
    def cpu_share(self) -> float:
        """The share of one core the generator used: near 1, it and not the service set the latencies."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def saturated(self) -> bool:
        return self.cpu_share > _SATURATED or self.late_starts > sum(self.outcomes.values()) // 100


_SATURATED = 0.8  # of one core: above it, requests queue inside the generator before they are sent


@dataclass
class Keys:
    main: str
    user: str
    viewer: str | None = None
    limited: str | None = None  # 1 query a minute: the rest are rejected (429) from a run's start
    made: list[int] = field(default_factory=list)  # ids of the keys made here, revoked at the end


async def _prepare_keys(client: httpx.AsyncClient, key: str) -> Keys:
    headers = {"authorization": f"Bearer {key}"}
    suffix = uuid.uuid4().hex[:8]
    user = await client.post(
        "/api/v1/keys", json={"name": f"loadgen-user-{suffix}", "role": "user"}, headers=headers
    )
    if user.status_code in (401, 429):
        raise LoadgenError(
            f"the service refused the key ({user.status_code}): give a valid one with --api-key"
        )
    if user.status_code != 201:  # not an admin key: use it for everything, skip denials and rejections
        return Keys(key, key)
    viewer = await client.post(
        "/api/v1/keys", json={"name": f"loadgen-viewer-{suffix}", "role": "viewer"}, headers=headers
    )
    limited = await client.post(
        "/api/v1/keys",
        json={"name": f"loadgen-limited-{suffix}", "role": "user", "rpm_limit": 1},
        headers=headers,
    )
    made = [r.json()["id"] for r in (user, viewer, limited) if r.status_code == 201]
    return Keys(
        key,
        user.json()["key"],
        viewer.json()["key"] if viewer.status_code == 201 else None,
        limited.json()["key"] if limited.status_code == 201 else None,
        made,
    )


async def _revoke_keys(client: httpx.AsyncClient, keys: Keys) -> None:
    headers = {"authorization": f"Bearer {keys.main}"}
    for key_id in keys.made:
        with contextlib.suppress(httpx.HTTPError):
            await client.delete(f"/api/v1/keys/{key_id}", headers=headers)


# Seconds a kept-alive connection may stay idle before loadgen drops it: less than the service's own limit
# (serve --timeout-keep-alive, 5 s), as for any client of a keep-alive server. httpx's default is those same
# 5 s: a connection idle that long could be reused just as the service closed it, and its request failed
# (one ReadError in 268,843 requests of a 30-minute soak).
IDLE = 2.0


class _Clients:
    """Connections spread over several small httpx pools. One pool of 64 connections spent most of the
    generator's CPU in httpcore's pool bookkeeping (each request scans every connection of its pool: 7.6 ms
    of CPU a request at 150 requests/s, one core saturated); pools of 4 cost a sixteenth of that."""

    _PER_POOL = 4

    def __init__(self, url: str, connections: int) -> None:
        limits = httpx.Limits(
            max_connections=self._PER_POOL, max_keepalive_connections=self._PER_POOL, keepalive_expiry=IDLE
        )
        self.pools = [
            httpx.AsyncClient(base_url=url, timeout=30, limits=limits)
            for _ in range(max(1, connections // self._PER_POOL))
        ]
        self._next = itertools.cycle(self.pools)

    def next(self) -> httpx.AsyncClient:
        return next(self._next)

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


Action = Callable[[httpx.AsyncClient], Awaitable[int]]


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


class _Traffic:
    """The kinds of request loadgen sends, each one method, and their weights in the mix."""

    def __init__(
        self, keys: Keys, agent_types: list[str], rng: random.Random, other_address: httpx.AsyncClient | None
    ) -> None:
        self._keys = keys
        self._agents = agent_types
        self._rng = rng
        self._other = other_address
        self._streamed = itertools.cycle(agent_types)  # every agent type streams: its panels have data

    def actions(self) -> list[tuple[float, str, Action]]:
        actions: list[tuple[float, str, Action]] = [
            (30.0, "query (repeated)", self._cached_query),
            (15.0, "query (new)", self._new_query),
            (10.0, "conversation", self._conversation),
            (10.0, "query (streamed)", self._streamed_query),
            (4.0, "chat completion (OpenAI face)", self._openai_face),
            (6.0, "provider error", self._provider_error),
            (8.0, "bad key", self._bad_key),
            (8.0, "summary", self._summary),
            (8.0, "health", self._health),
            (5.0, "custom metric", self._custom_metric),
        ]
        if self._keys.viewer is not None:
            actions.append((5.0, "forbidden", self._forbidden))
        if self._keys.limited is not None:
            actions.append((4.0, "query (rate-limited key)", self._limited))
        return actions

    async def _cached_query(self, client: httpx.AsyncClient) -> int:
        agent = self._rng.choice(self._agents)
        body = {"query": self._rng.choice(QUESTIONS)}
        return (
            await client.post(f"/api/v1/agents/{agent}/query", json=body, headers=_auth(self._keys.user))
        ).status_code

    async def _new_query(self, client: httpx.AsyncClient) -> int:
        agent = self._rng.choice(self._agents)
        body = {"query": f"{self._rng.choice(QUESTIONS)} (case {uuid.uuid4().hex[:6]})"}
        return (
            await client.post(f"/api/v1/agents/{agent}/query", json=body, headers=_auth(self._keys.user))
        ).status_code

    async def _streamed_query(self, client: httpx.AsyncClient) -> int:
        body = {"query": f"{self._rng.choice(QUESTIONS)} (streamed {uuid.uuid4().hex[:6]})", "stream": True}
        url = f"/api/v1/agents/{next(self._streamed)}/query"
        async with client.stream("POST", url, json=body, headers=_auth(self._keys.user)) as response:
            async for _ in response.aiter_bytes():
                pass
        return response.status_code

    async def _openai_face(self, client: httpx.AsyncClient) -> int:
        question = f"{self._rng.choice(QUESTIONS)} (openai {uuid.uuid4().hex[:6]})"
        body = {"model": self._rng.choice(self._agents), "messages": [{"role": "user", "content": question}]}
        return (
            await client.post("/v1/chat/completions", json=body, headers=_auth(self._keys.user))
        ).status_code

    async def _conversation(self, client: httpx.AsyncClient) -> int:
        created = await client.post("/api/v1/sessions", headers=_auth(self._keys.user))
        if created.status_code != 201:
            return created.status_code
        session = created.json()["id"]
        status = 0
        for question in self._rng.sample(QUESTIONS, 2):
            response = await client.post(
                f"/api/v1/agents/{self._rng.choice(self._agents)}/query",
                json={"query": question, "session_id": session},
                headers=_auth(self._keys.user),
            )
            status = response.status_code
        return status

    async def _provider_error(self, client: httpx.AsyncClient) -> int:
        body = {"query": f"{self._rng.choice(QUESTIONS)} {self._rng.choice(FAILURES)}"}
        return (
            await client.post(
                f"/api/v1/agents/{self._rng.choice(self._agents)}/query",
                json=body,
                headers=_auth(self._keys.user),
            )
        ).status_code

    async def _bad_key(self, client: httpx.AsyncClient) -> int:
        # From an address of its own (on loopback), so that the brute-force guard's cool-down, which the
        # bad keys soon earn, falls on them and not on the rest of the traffic.
        sender = self._other or client
        headers = _auth("agb_loadgenbadkey000_nope")
        return (await sender.get("/api/v1/monitoring/summary", headers=headers)).status_code

    async def _forbidden(self, client: httpx.AsyncClient) -> int:
        assert self._keys.viewer is not None
        body = {"query": "may I?"}
        return (
            await client.post(
                f"/api/v1/agents/{self._agents[0]}/query", json=body, headers=_auth(self._keys.viewer)
            )
        ).status_code

    async def _limited(self, client: httpx.AsyncClient) -> int:
        assert self._keys.limited is not None
        body = {"query": f"{self._rng.choice(QUESTIONS)} (limited {uuid.uuid4().hex[:6]})"}
        url = f"/api/v1/agents/{self._rng.choice(self._agents)}/query"
        return (await client.post(url, json=body, headers=_auth(self._keys.limited))).status_code

    async def _summary(self, client: httpx.AsyncClient) -> int:
        return (await client.get("/api/v1/monitoring/summary", headers=_auth(self._keys.main))).status_code

    async def _health(self, client: httpx.AsyncClient) -> int:
        return (await client.get("/api/v1/monitoring/health")).status_code

    async def _custom_metric(self, client: httpx.AsyncClient) -> int:
        body = {
            "metric_type": "counter",
            "name": "loadgen_events_total",
            "value": 1,
            "labels": {"kind": self._rng.choice(["signup", "login"])},
        }
        return (
            await client.post("/api/v1/monitoring/record", json=body, headers=_auth(self._keys.main))
        ).status_code


async def generate(
    url: str,
    api_key: str,
    rate: float,
    duration: float,
    *,
    seed: int = 1,
    quiet: bool = False,
    stats: Stats | None = None,
) -> Stats:
    """Send ``rate`` requests a second for ``duration`` seconds, counted in ``stats`` (a new Stats if not
    given); raise LoadgenError if the service at ``url`` cannot be reached or refuses ``api_key``."""
    rng = random.Random(seed)
    stats = stats if stats is not None else Stats()
    loopback = httpx.URL(url).host in ("127.0.0.1", "localhost")
    idle = httpx.Limits(keepalive_expiry=IDLE)  # the client's own when it makes its transport
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.66", limits=idle) if loopback else None
    clients = _Clients(url, connections=64)
    async with httpx.AsyncClient(
        base_url=url.replace("localhost", "127.0.0.1"),
        timeout=30,
        transport=transport,
        limits=idle,
    ) as other:
        try:
            keys = await _prepare_keys(clients.next(), api_key)
            listed = await clients.next().get(
                "/api/v1/agents", headers={"authorization": f"Bearer {keys.user}"}
            )
        except httpx.HTTPError as exc:
            await clients.aclose()
            raise LoadgenError(f"cannot reach the service at {url}: {exc or type(exc).__name__}") from None
        if listed.status_code != 200:
            await clients.aclose()
            raise LoadgenError(f"GET {url}/api/v1/agents answered {listed.status_code}: is this the service?")
        agent_types = [a["name"] for a in listed.json() if a["provider"] == "sim"] or [
            a["name"] for a in listed.json()
        ]
        actions = _Traffic(keys, agent_types, rng, other if loopback else None).actions()
        weights = [w for w, _, _ in actions]
        total = max(1, int(rate * duration))
        pending: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(64)

        async def fire(kind: str, action: Callable[[httpx.AsyncClient], Awaitable[int]]) -> None:
            async with slots:
                started = time.perf_counter()
                try:
                    status = await action(clients.next())
                except httpx.HTTPError as exc:
                    status = 0
                    stats.errors[f"{kind}: {type(exc).__name__} {str(exc)[:120]}".rstrip()] += 1
                stats.add(kind, status, time.perf_counter() - started)

        progress = Progress(
            TextColumn("[bold]loadgen"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            disable=quiet,
        )
        cpu_before, start = time.process_time(), time.monotonic()
        try:
            with progress:
                task = progress.add_task("requests", total=total)
                for i in range(total):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -0.01:
                        stats.late_starts += 1
                    _, kind, action = rng.choices(actions, weights)[0]
                    job = asyncio.create_task(fire(kind, action))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
                    job.add_done_callback(lambda _: progress.advance(task))
                if pending:
                    await asyncio.gather(*pending)
        finally:
            stats.wall_seconds = time.monotonic() - start
            stats.cpu_seconds = time.process_time() - cpu_before
            await _revoke_keys(clients.next(), keys)
            await clients.aclose()
    return stats


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(stats: Stats, console: Console) -> None:
    table = Table("traffic", "status", "count", "p50 ms", "p99 ms")
    for (kind, status), count in sorted(stats.outcomes.items()):
        latencies = stats.latencies[(kind, status)]
        table.add_row(
            kind,
            str(status or "failed"),
            str(count),
            f"{statistics.median(latencies) * 1000:.1f}",
            f"{percentile(latencies, 0.99) * 1000:.1f}",
        )
    console.print(table)
    console.print(
        f"loadgen used {stats.cpu_share:.0%} of a core over {stats.wall_seconds:.1f} s"
        f"{f'; {stats.late_starts} requests left late' if stats.late_starts else ''}"
    )
    if stats.saturated:
        console.print(
            "[yellow]warning:[/yellow] loadgen itself was the bottleneck (its core busy, or requests sent "
            "late): the latencies above include its own queueing. Lower --rate or run it on another core."
        )
