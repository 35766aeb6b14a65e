"""The naming rules a custom metric must pass so that every consumer of ``/metrics`` accepts it.

Three consumers are held to: the OpenMetrics 1.0 specification (as prometheus_client's strict parser reads
it), the Prometheus text format, and ``promtool check metrics``, which also lints names. A record that would
break any of them is refused with a sentence saying what to change.

* ``occupied_names``: every name a family takes in either format. OpenMetrics names a counter's family
  without ``_total`` and reserves ``<family>_created`` for counters and histograms; a parser refuses two
  families whose names plus their type's suffixes meet ("Clashing name"), so a gauge ``jobs_created`` and
  a counter ``jobs_total`` cannot both exist, in either order.
* ``lint_problem``: promtool's linter (client_golang's promlint) as of Prometheus 2.42 and later: camelCase
  names and label names, ``:`` (reserved for recording rules), a metric type in the name, abbreviated or
  non-base units, ``_total`` on anything but a counter, ``_bucket``/``_count``/``_sum`` on anything but a
  histogram, the labels ``le`` (histograms' own) and ``quantile`` (summaries'). Written by hand because no
  Python library carries these rules; the property tests run the real promtool against them.
"""

from __future__ import annotations

import re

from agentic_backend.monitoring.metrics import MetricSpec, MetricType

# OpenMetrics: what each type adds to its family name (prometheus_client's strict parser, type_suffixes).
_OPENMETRICS_SUFFIXES = {
    MetricType.COUNTER: ("", "_total", "_created"),
    MetricType.GAUGE: ("",),
    MetricType.HISTOGRAM: ("", "_count", "_sum", "_bucket", "_created"),
}
_CAMEL_CASE = re.compile(r"[a-z][A-Z]")
_TYPE_WORDS = ("counter", "gauge", "summary", "histogram", "gauge_histogram")  # dto.MetricType, not untyped
_UNIT_ABBREVIATIONS = ("s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d")
_BASE_UNITS = {
    "amperes": "amperes",
    "bytes": "bytes",
    "celsius": "celsius",
    "grams": "grams",
    "joules": "joules",
    "kelvin": "kelvin",
    "meters": "meters",
    "metres": "metres",
    "seconds": "seconds",
    "volts": "volts",
    "minutes": "seconds",
    "hours": "seconds",
    "days": "seconds",
    "weeks": "seconds",
    "kelvins": "kelvin",
    "fahrenheit": "celsius",
    "rankine": "celsius",
    "inches": "meters",
    "yards": "meters",
    "miles": "meters",
    "bits": "bytes",
    "calories": "joules",
    "pounds": "grams",
    "ounces": "grams",
}
_UNIT_PREFIXES = (
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo",
    "kibi", "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
)  # fmt: skip


def occupied_names(spec: MetricSpec) -> set[str]:
    """Every name ``spec``'s family takes in either exposition format."""
    family = spec.family_name
    return {spec.name, *spec.sample_names(), *(family + s for s in _OPENMETRICS_SUFFIXES[spec.type])}


def _has_word(name: str, word: str) -> bool:
    return f"_{word}_" in name or name.endswith(f"_{word}")


def _unit_problem(name: str) -> str | None:
    for part in name.split("_"):
        base = _BASE_UNITS.get(part)
        if base is None:
            base = next(
                (
                    _BASE_UNITS[part[len(p) :]]
                    for p in _UNIT_PREFIXES
                    if part.startswith(p) and part[len(p) :] in _BASE_UNITS
                ),
                None,
            )
        if base is not None:
            return None if part == base else f"use the base unit '{base}' instead of '{part}'"
    return None


def lint_problem(name: str, kind: MetricType) -> str | None:
    """What promtool's linter would say of a metric name, or None."""
    lowered = name.lower()
    if _CAMEL_CASE.search(name):
        return "write metric names in snake_case, not camelCase"
    if ":" in name:
        return "':' is reserved for recording rules' names"
    for word in _TYPE_WORDS:
        if _has_word(lowered, word):
            return f"a metric name should not say its type ('{word}')"
    for abbreviation in _UNIT_ABBREVIATIONS:
        if _has_word(lowered, abbreviation):
            return f"write units out in full (not '{abbreviation}'), in base units: _seconds, _bytes"
    unit = _unit_problem(name)
    if unit is not None:
        return unit
    if kind is not MetricType.COUNTER and name.endswith("_total"):
        return f"only counters end in _total; this is a {kind.value}, rename it"
    if kind is not MetricType.HISTOGRAM:
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                return f"'{suffix}' ends histograms' series names; a {kind.value} cannot end in it"
    return None


def label_problem(label: str) -> str | None:
    """What makes a label name unusable on a custom metric (of any of its types), or None."""
    if label.startswith("__"):
        return "names starting with '__' are reserved for Prometheus itself"
    if label == "le":
        return "'le' is reserved for histogram buckets"
    if label == "quantile":
        return "'quantile' is reserved for summaries"
    if _CAMEL_CASE.search(label):
        return "write label names in snake_case, not camelCase"
    return None
