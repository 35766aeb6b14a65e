"""A team bills its own customers from the ledger: the end user (OpenAI's ``user``, the native body's
``user`` or the X-Agentic-End-User header) and the metadata tags of each query are kept with its row, and
``/api/v1/usage`` filters and groups by them; neither ever becomes a metric label."""

from __future__ import annotations

import httpx


async def ask(
    client: httpx.AsyncClient, text: str, *, user: str | None, tags: dict[str, str] | None, via: str
) -> None:
    if via == "openai":
        body: dict[str, object] = {"model": "assistant", "messages": [{"role": "user", "content": text}]}
        if user is not None:
            body["user"] = user
        if tags is not None:
            body["metadata"] = tags
        response = await client.post("/v1/chat/completions", json=body)
    elif via == "header":
        headers = {"x-agentic-end-user": user} if user is not None else {}
        payload = {"query": text, **({"metadata": tags} if tags else {})}
        response = await client.post("/api/v1/agents/assistant/query", json=payload, headers=headers)
    else:
        payload = {"query": text, **({"user": user} if user else {}), **({"metadata": tags} if tags else {})}
        response = await client.post("/api/v1/agents/assistant/query", json=payload)
    assert response.status_code == 200, response.text


async def test_usage_by_end_user_and_tag(client: httpx.AsyncClient) -> None:
    await ask(client, "alpha one", user="cust-a", tags={"team": "zeta", "env": "prod"}, via="openai")
    await ask(client, "alpha two", user="cust-a", tags={"team": "zeta"}, via="native")
    await ask(client, "beta one", user="cust-b", tags={"team": "billing"}, via="header")
    await ask(client, "anonymous", user=None, tags=None, via="native")

    mine = (await client.get("/api/v1/usage", params={"end_user": "cust-a"})).json()
    assert mine["totals"]["queries"] == 2
    assert {r["end_user"] for r in mine["records"]} == {"cust-a"}
    assert mine["records"][-1]["tags"] == {"team": "zeta", "env": "prod"}
    search = (await client.get("/api/v1/usage", params={"tag": "team:zeta"})).json()
    assert search["totals"]["queries"] == 2
    assert (await client.get("/api/v1/usage", params={"tag": "team:nobody"})).json()["totals"]["queries"] == 0

    by_user = (await client.get("/api/v1/usage/groups", params={"by": "end_user"})).json()
    counts = {g["group"]: g["queries"] for g in by_user["groups"]}
    assert counts == {"cust-a": 2, "cust-b": 1, None: 1}
    assert all(g["cost_dollars"] > 0 for g in by_user["groups"])
    by_team = (await client.get("/api/v1/usage/groups", params={"by": "tag:team"})).json()
    assert {g["group"]: g["queries"] for g in by_team["groups"]} == {"zeta": 2, "billing": 1, None: 1}
    total = sum(g["cost_dollars"] for g in by_team["groups"])
    everything = (await client.get("/api/v1/usage")).json()["totals"]["cost_dollars"]
    assert abs(total - everything) < 1e-12

    metrics = (await client.get("/api/v1/monitoring/metrics")).text
    assert "cust-a" not in metrics
    assert "zeta" not in metrics


async def test_attribution_is_bounded_and_scoped(client: httpx.AsyncClient) -> None:
    too_many = {f"k{i}": "v" for i in range(17)}
    native = await client.post("/api/v1/agents/assistant/query", json={"query": "x", "metadata": too_many})
    assert native.status_code == 422
    long_user = await client.post(
        "/api/v1/agents/assistant/query", json={"query": "x"}, headers={"x-agentic-end-user": "u" * 257}
    )
    assert long_user.status_code == 400
    assert (await client.get("/api/v1/usage/groups", params={"by": "model"})).status_code == 422
    assert (await client.get("/api/v1/usage", params={"tag": "no-colon"})).status_code == 422
    created = (await client.post("/api/v1/keys", json={"name": "team-a", "role": "user"})).json()
    other = {"authorization": f"Bearer {created['key']}"}
    await ask(client, "admin's own", user="cust-z", tags=None, via="native")
    seen = (await client.get("/api/v1/usage/groups", params={"by": "end_user"}, headers=other)).json()
    assert seen["groups"] == []  # a user key sees its own key's usage only
    assert (
        await client.get("/api/v1/usage/groups", params={"by": "end_user", "key_id": 1}, headers=other)
    ).status_code == 403
