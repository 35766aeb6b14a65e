"""Roles and the permissions each holds. A role is a fixed set; a route needs exactly one permission."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    AGENTS_QUERY = "agents:query"
    SESSIONS_READ = "sessions:read"
    SESSIONS_WRITE = "sessions:write"
    USAGE_READ = "usage:read"
    USAGE_ADMIN = "usage:admin"
    MONITORING_READ = "monitoring:read"
    MONITORING_WRITE = "monitoring:write"
    KEYS_ADMIN = "keys:admin"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    USER = "user"
    VIEWER = "viewer"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    # Everything, including managing keys and reading every key's usage.
    Role.ADMIN: frozenset(Permission),
    # Runs the service: queries, its own sessions, monitoring read and write; no key management.
    Role.OPERATOR: frozenset(
        {
            Permission.AGENTS_QUERY,
            Permission.SESSIONS_READ,
            Permission.SESSIONS_WRITE,
            Permission.USAGE_READ,
            Permission.MONITORING_READ,
            Permission.MONITORING_WRITE,
        }
    ),
    # An application using agents: queries and its own sessions and usage.
    Role.USER: frozenset(
        {Permission.AGENTS_QUERY, Permission.SESSIONS_READ, Permission.SESSIONS_WRITE, Permission.USAGE_READ}
    ),
    # Dashboards and read-only tooling.
    Role.VIEWER: frozenset({Permission.MONITORING_READ, Permission.USAGE_READ}),
}


def allows(role: str, permission: str) -> bool:
    try:
        return Permission(permission) in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False
