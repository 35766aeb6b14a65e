"""Every role against every guarded route, on both databases: the status, and what the counters say."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agentic_backend.identity.permissions import ROLE_PERMISSIONS, Permission, Role
from tests.helpers import value

SESSION = "00000000-0000-4000-8000-000000000000"
# (method, path, body, permission, status when allowed)
ROUTES: list[tuple[str, str, Any, Permission, int]] = [
    ("GET", "/api/v1/monitoring/summary", None, Permission.MONITORING_READ, 200),
    (
        "POST",
        "/api/v1/monitoring/record",
        {"metric_type": "gauge", "name": "g", "value": 1},
        Permission.MONITORING_WRITE,
        200,
    ),
    ("GET", "/api/v1/keys", None, Permission.KEYS_ADMIN, 200),
    ("POST", "/api/v1/keys", {"name": "made-in-matrix", "role": "viewer"}, Permission.KEYS_ADMIN, 201),
    ("DELETE", "/api/v1/keys/999999", None, Permission.KEYS_ADMIN, 404),
    ("POST", "/api/v1/sessions", None, Permission.SESSIONS_WRITE, 201),
    ("GET", f"/api/v1/sessions/{SESSION}", None, Permission.SESSIONS_READ, 404),
    ("DELETE", f"/api/v1/sessions/{SESSION}", None, Permission.SESSIONS_WRITE, 404),
]


async def metrics(client: httpx.AsyncClient) -> str:
    return (await client.get("/api/v1/monitoring/metrics")).text


@pytest.mark.parametrize("role", list(Role))
async def test_permission_matrix(admin: httpx.AsyncClient, key_for: Callable[..., Any], role: Role) -> None:
    key = await key_for(role.value)
    for method, path, body, permission, allowed_status in ROUTES:
        before = await metrics(admin)
        response = await admin.request(method, path, json=body, headers={"authorization": f"Bearer {key}"})
        allowed = permission in ROLE_PERMISSIONS[role]
        expected = allowed_status if allowed else 403
        assert response.status_code == expected, (role, method, path, response.text)
        if not allowed:
            assert response.json() == {
                "error": "PermissionDenied",
                "detail": f"The key's role '{role.value}' does not include the permission '{permission.value}'.",
            }
        after = await metrics(admin)
        result = "allowed" if allowed else "denied"
        increase = (
            value(after, "permission_checks_total", permission=permission.value, result=result) or 0
        ) - (value(before, "permission_checks_total", permission=permission.value, result=result) or 0)
        assert increase == 1, (role, path)
        # One successful authentication each for the request itself (the admin's /metrics reads add theirs).
        assert (value(after, "auth_attempts_total", method="api_key", result="failure") or 0) == (
            value(before, "auth_attempts_total", method="api_key", result="failure") or 0
        )


@pytest.mark.parametrize(("method", "path", "body", "permission", "status"), ROUTES)
async def test_no_or_bad_key_is_401_with_one_body(
    anonymous: httpx.AsyncClient, method: str, path: str, body: Any, permission: Permission, status: int
) -> None:
    answers = []
    for headers in (
        {},
        {"authorization": ""},
        {"authorization": "Bearer agb_aaaaaaaaaaaaaaaa_not-a-real-secret"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "nope"},
    ):
        response = await anonymous.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        answers.append(response.json())
    assert all(a == answers[0] for a in answers)
    assert answers[0]["error"] == "InvalidApiKey"


async def test_open_routes_need_no_key(anonymous: httpx.AsyncClient) -> None:
    for path in ("/api/v1/monitoring/health", "/api/v1/monitoring/metrics", "/openapi.json"):
        assert (await anonymous.get(path)).status_code == 200


async def test_authentication_results_are_counted_by_reason(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, key_for: Callable[..., Any]
) -> None:
    key = await key_for("viewer")
    await anonymous.get("/api/v1/monitoring/summary", headers={"x-api-key": key})
    await anonymous.get("/api/v1/monitoring/summary")
    await anonymous.get("/api/v1/monitoring/summary", headers={"x-api-key": key + "x"})
    text = await metrics(admin)
    assert value(text, "auth_failures_total", reason="missing") == 1
    assert value(text, "auth_failures_total", reason="unknown") == 1
    assert (value(text, "auth_attempts_total", method="api_key", result="failure") or 0) == 2
    assert (value(text, "auth_attempts_total", method="api_key", result="success") or 0) >= 2


@pytest.mark.parametrize("role", list(Role))
async def test_aggregates_show_no_more_than_their_detail_route(
    admin: httpx.AsyncClient, key_for: Callable[..., Any], role: Role
) -> None:
    """The summary's spend per key follows /api/v1/usage: every key for usage:admin, else the caller's own
    (a viewer used to read every key's name and cost there while its usage route answered 403)."""
    other = await key_for("user", name="someone-else")
    spent = await admin.post(
        "/api/v1/agents/assistant/query",
        json={"query": "spend"},
        headers={"authorization": f"Bearer {other}"},
    )
    assert spent.status_code == 200
    mine = await key_for(role.value, name=f"me-{role.value}")
    headers = {"authorization": f"Bearer {mine}"}
    summary = await admin.get("/api/v1/monitoring/summary", headers=headers)
    if Permission.MONITORING_READ not in ROLE_PERMISSIONS[role]:
        assert summary.status_code == 403
        return
    names = {row["name"] for row in summary.json()["spend_by_key"]}
    every_key = Permission.USAGE_ADMIN in ROLE_PERMISSIONS[role]
    others_usage = await admin.get("/api/v1/usage", params={"key_id": 1}, headers=headers)
    assert others_usage.status_code == (200 if every_key else 403)
    if every_key:
        assert "someone-else" in names
    else:
        assert names <= {f"me-{role.value}"}, names
