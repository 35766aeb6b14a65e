"""MkDocs hooks: the reference pages are generated from the code when the site is built.

A page holds a marker (``<!-- generated: metrics -->`` or ``<!-- generated: settings -->``) where the table
goes: the metric reference from the catalogue (names, types, labels, help texts, buckets), the
configuration reference from ``Settings`` (variables, types, defaults, descriptions). Nothing is copied
by hand, so the site cannot disagree with the code, and `mkdocs build --strict` fails on a marker that
names nothing.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agentic_backend.core.config import Settings
from agentic_backend.metricstore.families import MetricSpec, MetricType
from agentic_backend.metricstore.registry import SERIES_OVERFLOW
from agentic_backend.monitoring.catalogue import CATALOGUE, GENAI_CATALOGUE

MARKER = re.compile(r"<!-- generated: ([\w-]+) -->")


def _text(text: str) -> str:
    """Plain text in Markdown: underscores and asterisks as themselves (``__unmatched__`` is no bold)."""
    return (
        text.replace("\\", "\\\\")
        .replace("_", "\\_")
        .replace("*", "\\*")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", " ")
    )


def _buckets(spec: MetricSpec) -> str:
    if spec.type is not MetricType.HISTOGRAM:
        return ""
    low, high = spec.buckets[0], spec.buckets[-1]

    def seconds(value: float) -> str:
        return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"

    shown = (seconds(low), seconds(high)) if spec.name.endswith("_seconds") else (f"{low:g}", f"{high:g}")
    return f" Buckets {shown[0]} … {shown[1]} ({len(spec.buckets)} edges)."


def _metric_entries(specs: tuple[MetricSpec, ...]) -> str:
    """A definition list: the name, its type and labels on the term's line, the help text below."""
    entries = []
    for spec in specs:
        labels = ", ".join(f"`{label}`" for label in spec.labelnames)
        term = f"`{spec.name}` · {spec.type.value}" + (f" · {labels}" if labels else "")
        entries.append(f"{term}\n:   {_text(spec.help)}{_buckets(spec)}\n")
    return "\n".join(entries)


def metrics_table() -> str:
    return _metric_entries((*CATALOGUE, SERIES_OVERFLOW))


def genai_metrics_table() -> str:
    return _metric_entries(GENAI_CATALOGUE)


_NAMES = {
    str: "text",
    int: "integer",
    float: "number",
    bool: "true or false",
    Path: "path",
    SecretStr: "secret",
}


def _type(annotation: Any) -> str:
    """A setting's type as a reader says it: ``str | None`` is text (unset is its default)."""
    options = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) else []
    if get_origin(annotation) is Literal:
        return " or ".join(f"`{value}`" for value in get_args(annotation))
    if options:
        return " or ".join(_type(option) for option in options)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " or ".join(f"`{member.value}`" for member in annotation)
    return _NAMES.get(annotation, str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else "computed"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


# The settings page's headings, in Settings' order: each section begins at the setting named here.
SECTIONS = {
    "environment": "Service and storage",
    "admin_api_key": "Keys and sessions",
    "agents_file": "Agents, cache and spend",
    "sim_latency_ms": "The sim provider",
    "stream_keepalive_seconds": "Requests, logs and telemetry",
    "http_max_head_bytes": "What one client can hold",
    "openai_api_key": "Providers",
    "key_cache_seconds": "Performance",
    "metrics_token": "Metrics and custom metrics",
    "prometheus_url": "The console and the monitoring stack",
}


def settings_table() -> str:
    """Definition lists under a heading per section: the variable, its type and default on the term's
    line, what it does below."""
    unknown = set(SECTIONS) - set(Settings.model_fields)
    if unknown or next(iter(Settings.model_fields)) not in SECTIONS:
        raise ValueError(f"SECTIONS names no setting {sorted(unknown)}, or does not begin with the first")
    prefix = Settings.model_config.get("env_prefix", "")
    entries = []
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            entries.append(f"## {SECTIONS[name]}\n")
        term = f"`{prefix}{name.upper()}` · {_type(field.annotation)} · default {_default(field)}"
        entries.append(f"{term}\n:   {_text(field.description or '')}\n")
    return "\n".join(entries)


GENERATORS = {"metrics": metrics_table, "genai-metrics": genai_metrics_table, "settings": settings_table}


def generate(markdown: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"no generator for the marker {match.group(0)!r}: {sorted(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return generate(markdown)
