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
from collections.abc import Iterable

from pydantic.config import JsonDict, JsonValue

from agentic_backend.metricstore.families import MetricSpec, MetricType

# OpenMetrics: what each type adds to its family name (prometheus_client's strict parser, type_suffixes).
_OPENMETRICS_SUFFIXES = {
    MetricType.COUNTER: ("", "_total", "_created"),
    MetricType.GAUGE: ("",),
    MetricType.HISTOGRAM: ("", "_count", "_sum", "_bucket", "_created"),
}
_CAMEL_CASE = re.compile(r"[a-z][A-Z]")
# Series Prometheus adds to every target, and prefixes it or this service owns.
RESERVED_NAMES = frozenset({"up"})
RESERVED_PREFIXES = ("scrape_", "agentic_backend_", "__")
_RESERVED_LABELS = ("le", "quantile")
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
    # Every word is checked, where promlint stops at the first unit it meets: a name with any unit that is
    # not a base unit is refused, which is stricter than promtool and exactly what the published JSON
    # Schema says (a pattern cannot say "the first unit word").
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
        if base is not None and part != base:
            return f"use the base unit '{base}' instead of '{part}'"
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


def reserved_problem(name: str) -> str | None:
    """Why a metric name belongs to Prometheus or the service, or None."""
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return (
            f"the name is reserved (names {', '.join(repr(n) for n in sorted(RESERVED_NAMES))}, and "
            f"starting with {', '.join(RESERVED_PREFIXES)}); choose another name."
        )
    return None


def label_problem(label: str) -> str | None:
    """What makes a label name unusable on a custom metric (of any of its types), or None."""
    if label.startswith("__"):
        return "names starting with '__' are reserved for Prometheus itself"
    if label == _RESERVED_LABELS[0]:
        return "'le' is reserved for histogram buckets"
    if label == _RESERVED_LABELS[1]:
        return "'quantile' is reserved for summaries"
    if _CAMEL_CASE.search(label):
        return "write label names in snake_case, not camelCase"
    return None


# -- the same rules as JSON Schema, for the OpenAPI document -------------------------------------------
# Built from the constants above, so the published schema and the checks cannot drift apart:
# tests/integration/test_contract.py has schemathesis send schema-valid records and expect them accepted,
# and schema-invalid ones and expect them refused.


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


def _words(words: Iterable[str], *, any_case: bool) -> str:
    return "|".join(_any_case(w) if any_case else re.escape(w) for w in sorted(words, key=len, reverse=True))


def metric_name_schema(kind: MetricType) -> JsonDict:
    """The JSON Schema of a custom metric's name of type ``kind``: every rule ``lint_problem``,
    ``reserved_problem`` and the grammar apply (a name's clash with an existing metric is a 409, not a
    schema matter)."""
    non_base = [u for u, base in _BASE_UNITS.items() if u != base]
    prefixed = [p + u for p in _UNIT_PREFIXES for u in _BASE_UNITS]
    refused: list[JsonValue] = [
        {"pattern": "^(" + "|".join(re.escape(n) + "$" for n in sorted(RESERVED_NAMES)) + "|"
         + _words(RESERVED_PREFIXES, any_case=False) + ")"},
        {"pattern": _CAMEL_CASE.pattern},
        {"pattern": f"_({_words(_TYPE_WORDS, any_case=True)})(_|$)"},
        {"pattern": f"_({_words(_UNIT_ABBREVIATIONS, any_case=True)})(_|$)"},
        {"pattern": f"(^|_)({_words(non_base + prefixed, any_case=False)})(_|$)"},
    ]  # fmt: skip
    if kind is not MetricType.COUNTER:
        refused.append({"pattern": "_total$"})
    if kind is not MetricType.HISTOGRAM:
        refused.append({"pattern": "(_bucket|_count|_sum)$"})
    grammar = "^[a-zA-Z_][a-zA-Z0-9_]*_total$" if kind is MetricType.COUNTER else "^[a-zA-Z_][a-zA-Z0-9_]*$"
    return {"pattern": grammar, "not": {"anyOf": refused}}


def label_name_schema() -> JsonDict:
    """The JSON Schema of a custom metric's label name: ``label_problem`` and the grammar."""
    return {
        "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$",
        "not": {
            "anyOf": [
                {"pattern": "^__"},
                {"pattern": "^(" + "|".join(_RESERVED_LABELS) + ")$"},
                {"pattern": _CAMEL_CASE.pattern},
            ]
        },
    }
