"""Prometheus text format 0.0.4 and OpenMetrics 1.0 from a snapshot, in chunks.

Why not ``prometheus_client.generate_latest``: it builds a ``Metric`` and a ``Sample`` object per series and
formats every label set again on each scrape (about 400 ms for 18,000 series on our 2-core machine), all in
one call that blocks the event loop. Here each series carries its line prefixes, formatted once when it was
created, so a scrape formats only numbers, and it yields to the event loop between chunks so that other
requests are served while a large registry renders. ``bench/exposition.py`` measures both.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Iterator

from agentic_backend.monitoring.metrics import MetricType, format_float
from agentic_backend.monitoring.registry import FamilySnapshot, Snapshot

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CHUNK_SERIES = 100  # about 0.05 ms of formatting (and compressing) between two yields to the event loop
# ... and at most about this much text per chunk, so that a few very large series (custom histograms with
# long labels: up to ~700 KB each) never make one chunk, and its copies, hundreds of megabytes.
CHUNK_BYTES = 256 * 1024


def _escape_help(text: str, *, openmetrics: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _header(family: FamilySnapshot, *, openmetrics: bool) -> str:
    spec = family.spec
    name = spec.family_name if openmetrics else spec.name
    return (
        f"# HELP {name} {_escape_help(spec.help, openmetrics=openmetrics)}\n# TYPE {name} {spec.type.value}\n"
    )


def _fmt(value: float) -> str:
    text = repr(value)
    # repr() ends in a digit for every finite float; 'inf', '-inf' and 'nan' need Go's spelling.
    return text if text[-1] <= "9" else format_float(value)


def _family_lines(family: FamilySnapshot, start: int, stop: int, out: list[str]) -> None:
    pages = family.pages
    series = family.series
    if family.spec.type is not MetricType.HISTOGRAM:
        for i in range(start, stop):
            sample = series[i]
            slot = sample.slot
            out.append(f"{sample.lines[0]}{_fmt(pages[slot.page][slot.offset])}\n")
        return
    buckets = len(family.spec.buckets) + 1
    for i in range(start, stop):
        sample = series[i]
        slot = sample.slot
        values = pages[slot.page][slot.offset : slot.offset + buckets + 1]
        lines = sample.lines
        cumulative = 0.0
        for k in range(buckets):
            cumulative += values[k]
            out.append(f"{lines[k]}{_fmt(cumulative)}\n")
        out.append(f"{lines[buckets]}{_fmt(values[buckets])}\n")
        out.append(f"{lines[buckets + 1]}{_fmt(cumulative)}\n")


def iter_exposition(
    snapshot: Snapshot, *, openmetrics: bool = False, chunk: int = CHUNK_SERIES
) -> Iterator[str]:
    """The exposition as text chunks of at most ``chunk`` series and about ``CHUNK_BYTES`` each."""
    out: list[str] = []
    budget = chunk
    for family in snapshot:
        out.append(_header(family, openmetrics=openmetrics))
        start, total = 0, len(family.series)
        # Series of one family have the same lines but for their label values: the first one's size is
        # the estimate that caps how many go in one chunk.
        per_series = sum(len(line) + 25 for line in family.series[0].lines) if total else 1
        limit = min(chunk, max(1, CHUNK_BYTES // per_series))
        budget = min(budget, limit)
        while start < total:
            stop = min(total, start + budget)
            _family_lines(family, start, stop, out)
            budget -= stop - start
            start = stop
            if budget == 0:
                yield "".join(out)
                out.clear()
                budget = limit
    if openmetrics:
        out.append("# EOF\n")
    if out:
        yield "".join(out)


def render(snapshot: Snapshot, *, openmetrics: bool = False) -> str:
    return "".join(iter_exposition(snapshot, openmetrics=openmetrics))


async def stream_exposition(snapshot: Snapshot, *, openmetrics: bool, gzip: bool) -> AsyncIterator[bytes]:
    """The exposition as bytes, gzip-compressed if asked, yielding to the event loop after each chunk."""
    # Level 3: ~4x smaller than plain text at a fraction of level 9's CPU time (what gzip.compress uses).
    compressor = zlib.compressobj(3, zlib.DEFLATED, 31) if gzip else None
    for text in iter_exposition(snapshot, openmetrics=openmetrics):
        data = text.encode()
        if compressor is not None:
            data = compressor.compress(data)
        if data:
            yield data
        await asyncio.sleep(0)
    if compressor is not None:
        yield compressor.flush()
