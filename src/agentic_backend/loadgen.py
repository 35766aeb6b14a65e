"""``agentic-backend loadgen``: realistic traffic, so that every dashboard panel has data within a minute.

The mix: stateless agent queries over every agent type (some repeated, so the cache hits, some new, so it
misses, some streamed as Server-Sent Events), chat completions through the OpenAI-compatible face,
conversations in sessions, provider errors forced through ``sim`` directives, requests with a bad key
(authentication failures), requests a viewer key may not make (permission denials), summary reads, health
checks and custom metrics. With an admin key it creates the user and viewer keys it needs.
"""

from __future__ import annotations

import asyncio
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


@dataclass
class Stats:
    outcomes: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.outcomes[(kind, status)] += 1
        self.latencies.setdefault(kind, []).append(seconds)


@dataclass
class Keys:
    main: str
    user: str
    viewer: str | None = None
    limited: str | None = None  # 5 queries a minute: the rest are rejected (429)


async def _prepare_keys(client: httpx.AsyncClient, key: str) -> Keys:
    headers = {"authorization": f"Bearer {key}"}
    suffix = uuid.uuid4().hex[:8]
    user = await client.post(
        "/api/v1/keys", json={"name": f"loadgen-user-{suffix}", "role": "user"}, headers=headers
    )
    if user.status_code != 201:  # not an admin key: use it for everything, skip denials and rejections
        return Keys(key, key)
    viewer = await client.post(
        "/api/v1/keys", json={"name": f"loadgen-viewer-{suffix}", "role": "viewer"}, headers=headers
    )
    limited = await client.post(
        "/api/v1/keys",
        json={"name": f"loadgen-limited-{suffix}", "role": "user", "rpm_limit": 5},
        headers=headers,
    )
    return Keys(
        key,
        user.json()["key"],
        viewer.json()["key"] if viewer.status_code == 201 else None,
        limited.json()["key"] if limited.status_code == 201 else None,
    )


def _actions(
    keys: Keys, agent_types: list[str], rng: random.Random, other_address: httpx.AsyncClient | None
) -> list[tuple[float, str, Callable[[httpx.AsyncClient], Awaitable[int]]]]:
    def auth(key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    async def cached_query(client: httpx.AsyncClient) -> int:
        agent = rng.choice(agent_types)
        body = {"query": rng.choice(QUESTIONS)}
        return (
            await client.post(f"/api/v1/agents/{agent}/query", json=body, headers=auth(keys.user))
        ).status_code

    async def new_query(client: httpx.AsyncClient) -> int:
        agent = rng.choice(agent_types)
        body = {"query": f"{rng.choice(QUESTIONS)} (case {uuid.uuid4().hex[:6]})"}
        return (
            await client.post(f"/api/v1/agents/{agent}/query", json=body, headers=auth(keys.user))
        ).status_code

    streamed_agents = itertools.cycle(agent_types)  # every agent type streams: its panels have data

    async def streamed_query(client: httpx.AsyncClient) -> int:
        body = {"query": f"{rng.choice(QUESTIONS)} (streamed {uuid.uuid4().hex[:6]})", "stream": True}
        url = f"/api/v1/agents/{next(streamed_agents)}/query"
        async with client.stream("POST", url, json=body, headers=auth(keys.user)) as response:
            async for _ in response.aiter_bytes():
                pass
        return response.status_code

    async def openai_face(client: httpx.AsyncClient) -> int:
        question = f"{rng.choice(QUESTIONS)} (openai {uuid.uuid4().hex[:6]})"
        body = {"model": rng.choice(agent_types), "messages": [{"role": "user", "content": question}]}
        return (await client.post("/v1/chat/completions", json=body, headers=auth(keys.user))).status_code

    async def conversation(client: httpx.AsyncClient) -> int:
        created = await client.post("/api/v1/sessions", headers=auth(keys.user))
        if created.status_code != 201:
            return created.status_code
        session = created.json()["id"]
        status = 0
        for question in rng.sample(QUESTIONS, 2):
            response = await client.post(
                f"/api/v1/agents/{rng.choice(agent_types)}/query",
                json={"query": question, "session_id": session},
                headers=auth(keys.user),
            )
            status = response.status_code
        return status

    async def provider_error(client: httpx.AsyncClient) -> int:
        body = {"query": f"{rng.choice(QUESTIONS)} {rng.choice(FAILURES)}"}
        return (
            await client.post(
                f"/api/v1/agents/{rng.choice(agent_types)}/query", json=body, headers=auth(keys.user)
            )
        ).status_code

    async def bad_key(client: httpx.AsyncClient) -> int:
        # From an address of its own (on loopback), so that the brute-force guard's cool-down, which the
        # bad keys soon earn, falls on them and not on the rest of the traffic.
        sender = other_address or client
        headers = auth("agb_loadgenbadkey000_nope")
        return (await sender.get("/api/v1/monitoring/summary", headers=headers)).status_code

    async def forbidden(client: httpx.AsyncClient) -> int:
        assert keys.viewer is not None
        body = {"query": "may I?"}
        return (
            await client.post(f"/api/v1/agents/{agent_types[0]}/query", json=body, headers=auth(keys.viewer))
        ).status_code

    async def limited(client: httpx.AsyncClient) -> int:
        assert keys.limited is not None
        body = {"query": f"{rng.choice(QUESTIONS)} (limited {uuid.uuid4().hex[:6]})"}
        url = f"/api/v1/agents/{rng.choice(agent_types)}/query"
        return (await client.post(url, json=body, headers=auth(keys.limited))).status_code

    async def summary(client: httpx.AsyncClient) -> int:
        return (await client.get("/api/v1/monitoring/summary", headers=auth(keys.main))).status_code

    async def health(client: httpx.AsyncClient) -> int:
        return (await client.get("/api/v1/monitoring/health")).status_code

    async def custom_metric(client: httpx.AsyncClient) -> int:
        body = {
            "metric_type": "counter",
            "name": "loadgen_events_total",
            "value": 1,
            "labels": {"kind": rng.choice(["signup", "login"])},
        }
        return (
            await client.post("/api/v1/monitoring/record", json=body, headers=auth(keys.main))
        ).status_code

    actions: list[tuple[float, str, Callable[[httpx.AsyncClient], Awaitable[int]]]] = [
        (30.0, "query (repeated)", cached_query),
        (15.0, "query (new)", new_query),
        (10.0, "conversation", conversation),
        (10.0, "query (streamed)", streamed_query),
        (4.0, "chat completion (OpenAI face)", openai_face),
        (6.0, "provider error", provider_error),
        (8.0, "bad key", bad_key),
        (8.0, "summary", summary),
        (8.0, "health", health),
        (5.0, "custom metric", custom_metric),
    ]
    if keys.viewer is not None:
        actions.append((5.0, "forbidden", forbidden))
    if keys.limited is not None:
        actions.append((4.0, "query (rate-limited key)", limited))
    return actions


async def generate(
    url: str, api_key: str, rate: float, duration: float, *, seed: int = 1, quiet: bool = False
) -> Stats:
    rng = random.Random(seed)
    stats = Stats()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    loopback = httpx.URL(url).host in ("127.0.0.1", "localhost")
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.66") if loopback else None
    async with (
        httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client,
        httpx.AsyncClient(
            base_url=url.replace("localhost", "127.0.0.1"), timeout=30, transport=transport
        ) as other,
    ):
        keys = await _prepare_keys(client, api_key)
        listed = await client.get("/api/v1/agents", headers={"authorization": f"Bearer {keys.user}"})
        listed.raise_for_status()
        agent_types = [a["name"] for a in listed.json() if a["provider"] == "sim"] or [
            a["name"] for a in listed.json()
        ]
        actions = _actions(keys, agent_types, rng, other if loopback else None)
        weights = [w for w, _, _ in actions]
        total = max(1, int(rate * duration))
        pending: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(64)

        async def fire(kind: str, action: Callable[[httpx.AsyncClient], Awaitable[int]]) -> None:
            async with slots:
                started = time.perf_counter()
                try:
                    status = await action(client)
                except httpx.HTTPError:
                    status = 0
                stats.add(kind, status, time.perf_counter() - started)

        progress = Progress(
            TextColumn("[bold]loadgen"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            disable=quiet,
        )
        with progress:
            task = progress.add_task("requests", total=total)
            start = time.monotonic()
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                _, kind, action = rng.choices(actions, weights)[0]
                job = asyncio.create_task(fire(kind, action))
                pending.add(job)
                job.add_done_callback(pending.discard)
                job.add_done_callback(lambda _: progress.advance(task))
            if pending:
                await asyncio.gather(*pending)
    return stats


def report(stats: Stats, console: Console) -> None:
    table = Table("traffic", "status", "count", "p50 ms", "p99 ms")
    for (kind, status), count in sorted(stats.outcomes.items()):
        latencies = sorted(stats.latencies[kind])
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        table.add_row(
            kind,
            str(status or "failed"),
            str(count),
            f"{statistics.median(latencies) * 1000:.1f}",
            f"{p99 * 1000:.1f}",
        )
    console.print(table)
