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
from typing import Any

from agentic_backend.metricstore.exemplars import Exemplar, Exemplars
from agentic_backend.metricstore.families import MetricType, format_float
from agentic_backend.metricstore.registry import FamilySnapshot, Snapshot
from agentic_backend.metricstore.timeslice import TimeSlice

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CHUNK_SERIES = 100  # series formatted per chunk (the stream yields to the event loop by time, timeslice.py)
# ... and at most about this much text per chunk, so that a few very large series (custom histograms with
# long labels: up to ~700 KB each) never make one chunk, and its copies, hundreds of megabytes.
CHUNK_BYTES = 256 * 1024
# Chunks are sent in pieces of about this size: every ``send`` through Starlette and uvicorn costs tens of
# microseconds, which for a few hundred chunks was more than the rendering itself.
SEND_BYTES = 64 * 1024
COMPRESS_BYTES = 256 * 1024  # text compressed at once (in a thread: see _compressed)
# A series' text is kept for the next scrape only up to this size: the built-in series (a histogram with
# its buckets is about 2 KB) are, the few huge custom ones a byte budget allows are formatted every time,
# so the memo adds at most a few MB (the series caps times this) and never a copy of a huge exposition.
_MEMO_BYTES = 4096


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
    # Most series of a large registry do not change between two scrapes: a series whose values equal
    # the last scrape's reuses that scrape's text (a float or list comparison instead of formatting
    # every value; NaN never compares equal, so it is formatted again). Huge series are not kept
    # (``_MEMO_BYTES``). ``bench/scrape_merge.py`` measures it.
    pages = family.pages
    series = family.series
    if family.spec.type is not MetricType.HISTOGRAM:
        for i in range(start, stop):
            sample = series[i]
            slot = sample.slot
            value = pages[slot.page][slot.offset]
            if value == sample.shown:
                out.append(sample.text)
                continue
            text = f"{sample.lines[0]}{_fmt(value)}\n"
            if len(text) <= _MEMO_BYTES:
                sample.text, sample.shown = text, value
            out.append(text)
        return
    buckets = len(family.spec.buckets) + 1
    for i in range(start, stop):
        sample = series[i]
        slot = sample.slot
        values = pages[slot.page][slot.offset : slot.offset + buckets + 1]
        if values == sample.shown:
            out.append(sample.text)
            continue
        text = _histogram_text(sample.lines, values, buckets)
        if len(text) <= _MEMO_BYTES:
            sample.text, sample.shown = text, values
        out.append(text)


def _exemplar_lines(
    family: FamilySnapshot, start: int, stop: int, out: list[str], exemplars: Exemplars
) -> None:
    """A family that carries exemplars (OpenMetrics only): series with one are formatted afresh, with
    their exemplars after the samples; the others as usual."""
    name = family.spec.name
    for i in range(start, stop):
        sample = family.series[i]
        found = exemplars.of(name, sample.labels)
        if found is None:
            _family_lines(family, i, i + 1, out)
            continue
        values = family.values(sample)
        if family.spec.type is MetricType.HISTOGRAM:
            out.append(_histogram_text(sample.lines, values, len(family.spec.buckets) + 1, found))
        else:
            suffix = found[0].suffix() if 0 in found else ""
            out.append(f"{sample.lines[0]}{_fmt(values[0])}{suffix}\n")


def _histogram_text(
    lines: tuple[str, ...], values: list[float], buckets: int, exemplars: dict[int, Exemplar] | None = None
) -> str:
    parts = []
    cumulative = 0.0
    for k in range(buckets):
        cumulative += values[k]
        if exemplars is not None and k in exemplars:
            parts.append(f"{lines[k]}{_fmt(cumulative)}{exemplars[k].suffix()}\n")
            continue
        parts.append(f"{lines[k]}{_fmt(cumulative)}\n")
    parts.append(f"{lines[buckets]}{_fmt(values[buckets])}\n")
    parts.append(f"{lines[buckets + 1]}{_fmt(cumulative)}\n")
    return "".join(parts)


def iter_exposition(
    snapshot: Snapshot,
    *,
    openmetrics: bool = False,
    chunk: int = CHUNK_SERIES,
    exemplars: Exemplars | None = None,
) -> Iterator[str]:
    """The exposition as text chunks of at most ``chunk`` series and about ``CHUNK_BYTES`` each; with
    ``exemplars`` (OpenMetrics only), theirs after the samples they belong to."""
    out: list[str] = []
    budget = chunk
    with_exemplars = exemplars.families if exemplars is not None and openmetrics else frozenset()
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
            if family.spec.name in with_exemplars:
                assert exemplars is not None
                _exemplar_lines(family, start, stop, out, exemplars)
            else:
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


async def stream_exposition(
    snapshot: Snapshot, *, openmetrics: bool, gzip: bool, exemplars: Exemplars | None = None
) -> AsyncIterator[bytes]:
    """The exposition as bytes, gzip-compressed if asked, in pieces of about ``SEND_BYTES`` (text) or
    ``COMPRESS_BYTES`` (before compression), yielding to the event loop between slices of work."""
    # Level 1: ~12x smaller than plain text (series lines repeat), 12 % less CPU than level 3 for 0.2 % more
    # bytes, a fraction of level 9's CPU time (what gzip.compress uses).
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None
    limit = COMPRESS_BYTES if compressor is not None else SEND_BYTES
    pause = TimeSlice()
    pending: list[bytes] = []
    size = 0
    for text in iter_exposition(snapshot, openmetrics=openmetrics, exemplars=exemplars):
        data = text.encode()
        pending.append(data)
        size += len(data)
        if size >= limit or (compressor is None and pause.expired()):
            yield await _compressed(compressor, pending) if compressor is not None else b"".join(pending)
            pending.clear()
            size = 0
        await pause()
    if compressor is not None:
        yield await _compressed(compressor, pending) + compressor.flush()
    elif pending:
        yield b"".join(pending)


async def _compressed(compressor: Any, pieces: list[bytes]) -> bytes:
    # zlib releases the GIL while it deflates: in a thread, the other core compresses while this event
    # loop goes on serving requests (a scrape's largest single cost, ~1 ms for 400 KB of text).
    data = b"".join(pieces)
    if len(data) < 16 * 1024:
        return bytes(compressor.compress(data))
    return bytes(await asyncio.to_thread(compressor.compress, data))
