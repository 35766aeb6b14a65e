"""Which failures are the storage layer's (a 503 with Retry-After) and which are bugs (a 500)."""

from __future__ import annotations

import errno
import logging
import sqlite3

import httpx
import pytest
from fastapi import FastAPI
from redis import exceptions as redis_exc
from sqlalchemy import exc as sa_exc

from agentic_backend.core.errors import install_error_handlers, storage_failure
from agentic_backend.core.logs import ACCESS_LOGGER, RequestLogMiddleware


def _operational(message: str) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError(message))


class _AsyncpgLike(Exception):
    """What SQLAlchemy's asyncpg adapter puts in ``orig``: an error carrying the server's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def _postgres(sqlstate: str) -> sa_exc.DBAPIError:
    return sa_exc.InternalError("SELECT 1", {}, _AsyncpgLike(sqlstate))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_operational("database is locked"), "locked"),
        (_operational("database or disk is full"), "disk is full"),
        (_operational("unable to open database file"), "unavailable"),
        (
            sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"),
            "every database connection is busy",
        ),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")), "unavailable"),
        (
            sa_exc.DBAPIError(
                "SELECT 1", {}, Exception("terminating connection"), connection_invalidated=True
            ),
            "connection was lost",
        ),
        (_postgres("57P01"), "unavailable"),  # terminating connection due to administrator command
        (_postgres("08006"), "unavailable"),  # connection failure
        (_postgres("53100"), "disk is full"),
        (_postgres("55P03"), "locked"),  # lock_timeout
        (_postgres("40P01"), "deadlocked"),
        (redis_exc.ConnectionError("Error 111 connecting"), "Redis is unavailable"),
        (redis_exc.TimeoutError("Timeout reading"), "Redis is unavailable"),
        (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),  # the metrics folder's
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk is full"),
    ],
)
def test_storage_failures_are_named(error: BaseException, reason: str) -> None:
    found = storage_failure(error)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        sa_exc.ProgrammingError("SELECT x", {}, sqlite3.ProgrammingError("no such column")),
        _postgres("23505"),  # unique violation: a bug, not an outage
        _postgres("42703"),  # undefined column
        ConnectionRefusedError(111, "refused"),  # raised outside any storage code: not the database's
        TimeoutError(),
        OSError(errno.ENOENT, "No such file or directory"),
        RuntimeError("bug"),
    ],
)
def test_everything_else_is_not_a_storage_failure(error: BaseException) -> None:
    assert storage_failure(error) is None


@pytest.mark.parametrize(
    ("header", "quoted"),
    [(None, None), ("req-42", "req-42"), ("a b\r\nSet-Cookie: x", None), ("x" * 129, None)],
)
async def test_a_server_error_and_its_log_line_name_one_request_id(
    caplog: pytest.LogCaptureFixture, header: str | None, quoted: str | None
) -> None:
    """The JSON request line and the 500's body quote the same id: the caller's if it is a safe token,
    else one new id (they used to draw one each, and the log repeated any header up to 128 characters)."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(RequestLogMiddleware)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"x-request-id": header} if header is not None else {}
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.get("/boom", headers=headers)
    assert answer.status_code == 500
    (line,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    request_id = answer.json()["request_id"]
    assert line.request_id == request_id  # type: ignore[attr-defined]
    assert answer.headers["x-request-id"] == request_id
    if quoted is not None:
        assert request_id == quoted
    else:
        assert request_id != header
        assert len(request_id) == 32
