"""Limits that hold across the workers of ``serve --workers 2`` on SQLite (the shared database store;
Redis's is tested in tests/unit/billing): a key's requests per minute, the brute-force guard, which counts
the client behind a trusted proxy and throttles failing attempts only, and a revocation, which both
workers act on at once (it used to be served 5 times in 12 by the other worker's key cache)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Service, children, wait_until

pytestmark = pytest.mark.integration


def test_limits_hold_across_workers(tmp_path: Path) -> None:
    service = Service(
        tmp_path,
        workers=2,
        env={"AGENTIC_AUTH_FAILURE_LIMIT": "5"},
        serve_args=["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"],  # a proxy on this machine
    )
    try:
        wait_until(lambda: len(children(service.popen.pid)) == 2, timeout=30, what="two workers")
        created = httpx.post(
            f"{service.url}/api/v1/keys",
            json={"name": "limited", "role": "user", "rpm_limit": 10},
            headers=service.headers,
        ).json()
        headers = {"authorization": f"Bearer {created['key']}"}
        codes = []
        for i in range(40):  # a new connection each: the kernel spreads them over both workers
            response = httpx.post(
                f"{service.url}/api/v1/agents/assistant/query", json={"query": f"q{i}"}, headers=headers
            )
            codes.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["x-ratelimit-limit"]) == 10
                assert response.headers["x-ratelimit-remaining"] == "0"
                assert 1 <= int(response.headers["retry-after"]) <= 60
        assert codes.count(200) == 10, codes
        assert codes.count(429) == 30

        summary = f"{service.url}/api/v1/monitoring/summary"
        attacker = {"authorization": "Bearer agb_wrongwrongwrong_guess", "x-forwarded-for": "203.0.113.9"}
        assert [httpx.get(summary, headers=attacker).status_code for _ in range(5)] == [401] * 5
        assert [httpx.get(summary, headers=attacker).status_code for _ in range(4)] == [429] * 4
        # The same address with a valid key (behind one NAT), and another client behind the same proxy.
        colleague = {**service.headers, "x-forwarded-for": "203.0.113.9"}
        assert httpx.get(summary, headers=colleague).status_code == 200
        bystander = {**attacker, "x-forwarded-for": "198.51.100.1"}
        assert httpx.get(summary, headers=bystander).status_code == 401

        # Revoked through one worker: refused by both at once, though both remembered it verified.
        victim = httpx.post(
            f"{service.url}/api/v1/keys",
            json={"name": "revoked-soon", "role": "user"},
            headers=service.headers,
        ).json()
        usage = f"{service.url}/api/v1/usage"

        def as_victim(n: int) -> dict[str, str]:  # from many addresses: the guard stays out of it
            return {"authorization": f"Bearer {victim['key']}", "x-forwarded-for": f"192.0.2.{n}"}

        assert [httpx.get(usage, headers=as_victim(n)).status_code for n in range(12)] == [200] * 12
        revoked = httpx.delete(f"{service.url}/api/v1/keys/{victim['id']}", headers=service.headers)
        assert revoked.status_code == 204
        assert [httpx.get(usage, headers=as_victim(n)).status_code for n in range(12)] == [401] * 12
    finally:
        service.stop()
