"""Ids of rows the service makes on every request: ordered by the time they were made.

A UUID version 7 (RFC 9562) holds the milliseconds since the epoch first and 74 random bits after them, so
ids sort by the time they were made. The ledger's request-id index, usage_tags' key, stored responses and
sessions (and their messages' session index) take a new id with each query. Random ids (uuid4) landed on
a random leaf of an index as large as the table: once it outgrew the database's cache each commit read
and rewrote a leaf of its own, and the checkpoints wrote them back all over the file; one client's p99
through the service went from 1.3 ms on a new database to 4.8-10.5 ms after 240,000 queries (SQLite;
on PostgreSQL, whose shared buffers held the index at that size, no difference was measured). Time-
ordered ids all go to an index's last leaves, as an autoincrement would (docs/decisions.md). The random
bits keep them unguessable.

By hand because ``uuid.uuid7`` is in the standard library from Python 3.14 only: the same layout.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """A new UUID version 7: sortable by the millisecond it was made in."""
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    value = (
        (milliseconds & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version 7
        | (random >> 68) << 64  # 12 bits
        | 0b10 << 62  # the RFC 9562 variant
        | random & (1 << 62) - 1  # 62 bits
    )
    return uuid.UUID(int=value)


def new_request_id() -> str:
    """A query's id: 32 hex digits of a ``uuid7``."""
    return uuid7().hex
