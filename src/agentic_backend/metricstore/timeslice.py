"""Yielding to the event loop by elapsed time, not by amount of work.

A scrape's merge and rendering are a few milliseconds of CPU split into many small steps. Yielding after
every step stretches the scrape over every request that arrives meanwhile, and each of them waits behind a
step (``bench/scrape_merge.py`` measured the p99 of other requests 1.7x higher with a yield every 100
series). Yielding once per slice of ``SLICE_SECONDS`` bounds how long any request waits behind a scrape
and keeps the scrape short, so that far fewer requests meet it at all.
"""

from __future__ import annotations

import asyncio
import time

SLICE_SECONDS = 0.001


class TimeSlice:
    """``await pause()`` between steps: yields to the event loop once ``SLICE_SECONDS`` have passed since
    the last yield (or the start)."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = time.perf_counter()

    def expired(self) -> bool:
        return time.perf_counter() - self._since >= SLICE_SECONDS

    async def __call__(self) -> None:
        if self.expired():
            await asyncio.sleep(0)
            self._since = time.perf_counter()
