"""The ids the service makes with every request sort by the time they were made (core/ids.py): a table's
index takes each new one at its end, as it does an autoincremented number."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

from agentic_backend.core.db import Database, upgrade_async
from agentic_backend.core.ids import new_request_id
from agentic_backend.identity.schemas import Principal
from agentic_backend.identity.service import KeyService
from agentic_backend.sessions.service import SessionService
from tests.conftest import FakeClock


def test_a_query_id_is_a_uuid7_ordered_by_time_and_unique() -> None:
    """32 hex digits as before (column width, logs, the usage API), now sorting by when they were made
    (the ledger's index takes them at its end: tests/unit/test_wal_checkpoint.py says why)."""
    before = time.time_ns() // 1_000_000
    made = []
    for _ in range(3):
        made += [new_request_id() for _ in range(2_000)]
        time.sleep(0.002)  # the next ones in a later millisecond
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == len(made)
    for text in made[::500]:
        value = uuid.UUID(hex=text)
        assert len(text) == 32
        assert text == value.hex
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert before <= value.int >> 80 <= after  # the milliseconds it was made in
    # made in different milliseconds: in order; within one, the random bits decide
    assert made[1_999] < made[2_000] < made[3_999] < made[4_000]
    assert sorted(made[::2_000]) == made[::2_000]


async def test_sessions_are_made_with_ordered_ids(tmp_path: Path, clock: FakeClock) -> None:
    """A session's messages are indexed by its id: recent sessions, the ones still talking, share the
    index's last leaves instead of each a random one."""
    url = f"sqlite+aiosqlite:///{tmp_path}/ids.db"
    await upgrade_async(url)
    database = Database(url)
    try:
        key = await KeyService(database, clock).create("k", "user")
        sessions = SessionService(database, clock, timedelta(hours=1))
        principal = Principal(key_id=key.id, name="k", role="user")
        made = []
        for _ in range(3):
            made.append((await sessions.create(principal)).id)
            await asyncio.sleep(0.002)
    finally:
        await database.close()
    assert [uuid.UUID(i).version for i in made] == [7, 7, 7]
    assert sorted(made) == made
