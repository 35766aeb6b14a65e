"""The dashboard's PromQL, evaluated over the service's own history when there is no Prometheus.

The console draws every panel from its one definition (``monitoring/panels.py``). With a Prometheus it
sends the PromQL there; on the embedded default it evaluates the same text here, over the samples the
history keeps (``console/history.py``). The parse is ``promql-parser`` (the Rust parser of GreptimeDB);
the evaluation is written here because no Python library evaluates PromQL: it covers what the panels use,
and refuses anything else at import time (a test evaluates every panel), so a new panel that needs more
fails in CI rather than on a user's screen.

What it covers: number literals; ``sum``, ``max``, ``min``, ``avg`` (``by``); ``rate`` and ``increase`` of
a range selector; ``histogram_quantile``; ``vector``; ``+ - * /`` and comparisons (filtering) between
scalars and vectors, one-to-one on equal label sets or ``on (...)``; ``and``/``or`` with ``on (...)``.

Where it differs from Prometheus, on purpose: the history keeps, per service run, the *sums* a panel
aggregates (``sum by (endpoint) (http_requests_total)``), sampled every few seconds; a run's counters
only grow (dead workers' counts are kept), so ``rate`` is the plain difference over the window with no
extrapolation, and a counter counts from zero at its run's start: ``increase`` over a range that holds the
start counts everything since (Prometheus misses what came before its first scrape).
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import promql_parser

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Values = list[float | None]  # one per step; None: no value at that step
Vector = dict[Labels, Values]

# Grafana's variables in the panels' PromQL, and what the console puts there.
SCOPE = re.compile(r'(?:job|instance)=~"\$(?:job|instance)",?\s*')
MAX_RANGE_SECONDS = 30 * 86400


class UnsupportedQuery(ValueError):
    """A panel's PromQL uses something this evaluator does not (a test evaluates every panel)."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str  # =, !=, =~, !~
    value: str

    def matches(self, value: str) -> bool:
        if self.op in ("=", "!="):
            return (value == self.value) == (self.op == "=")
        return bool(_regex(self.value).fullmatch(value)) == (self.op == "=~")


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Leaf:
    """What the history keeps for one selector of a panel: ``op by (group) (name{matchers})`` of the raw
    series (op ``sum`` for counters, the aggregation itself for a gauge read without rate)."""

    name: str
    matchers: tuple[Matcher, ...]
    group: tuple[str, ...]
    op: str

    @property
    def key(self) -> str:
        """A stable name for the stored sums (the same across versions as long as the query is)."""
        where = ",".join(f"{m.name}{m.op}{m.value!r}" for m in self.matchers)
        return f"{self.op} by ({','.join(self.group)}) ({self.name}{{{where}}})"


@dataclass(slots=True)
class Series:
    """One stored series of a leaf, for one service run: its samples' times and values."""

    labels: Labels
    start: float  # the run's first sample: before it, a counter is zero
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def at(self, t: float, *, counter: bool, lookback: float) -> float | None:
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return 0.0 if counter else None  # a counter is zero before its run's first sample
        if not counter and t - self.times[i] > lookback:
            return None  # a gauge not reported lately: gone
        return self.values[i]


class Source(Protocol):
    def series(self, leaf: Leaf) -> list[Series]:
        """Every stored series of ``leaf`` (its group's labels plus ``instance``, the run)."""
        ...


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed panel query and the leaves the history must keep for it."""

    text: str
    root: Any
    leaves: tuple[Leaf, ...]


def unscoped(expr: str) -> str:
    """The panel's PromQL without Grafana's job/instance matchers (every job and instance)."""
    return SCOPE.sub("", expr).replace("{}", "")


@lru_cache(maxsize=512)
def parse(expr: str) -> Query:
    """Parse a panel's PromQL (``$__rate_interval`` and ``$__range`` stand for the window and the range)."""
    text = unscoped(expr).replace("$__rate_interval", "1m").replace("$__range", "1h")
    try:
        root = promql_parser.parse(text)
    except ValueError as exc:
        raise UnsupportedQuery(f"{expr}: {exc}") from None
    leaves = tuple(dict.fromkeys(_leaves(root, ("",), "sum")))
    return Query(expr, root, leaves)


_AGGREGATIONS = frozenset({"sum", "max", "min", "avg"})
_FUNCTIONS = frozenset({"rate", "increase", "histogram_quantile", "vector"})


def _matchers(selector: Any) -> tuple[Matcher, ...]:
    ops = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
    found = []
    for m in selector.matchers.matchers:
        if m.name == "__name__":
            continue
        found.append(Matcher(m.name, ops[str(m.op)], m.value))
    if selector.matchers.or_matchers:
        raise UnsupportedQuery("'or' matchers")
    return tuple(found)


def _leaves(node: Any, group: tuple[str, ...], op: str) -> Iterator[Leaf]:
    kind = type(node).__name__
    if kind == "AggregateExpr":
        if node.modifier is not None and str(node.modifier.type) != "AggModifierType.By":
            raise UnsupportedQuery("aggregation 'without'")
        labels = tuple(node.modifier.labels) if node.modifier is not None else ()
        if str(node.op) not in _AGGREGATIONS:
            raise UnsupportedQuery(f"aggregation {node.op}")
        yield from _leaves(node.expr, labels, str(node.op))
    elif kind == "Call":
        if node.func.name not in _FUNCTIONS:
            raise UnsupportedQuery(f"function {node.func.name}")
        for arg in node.args:
            yield from _leaves(arg, group, "sum" if node.func.name in ("rate", "increase") else op)
    elif kind == "MatrixSelector":
        yield from _leaves(node.vector_selector, group, "sum")
    elif kind == "VectorSelector":
        if group == ("",):
            raise UnsupportedQuery(f"{node.name} outside an aggregation")
        yield Leaf(node.name, _matchers(node), group, op)
    elif kind in ("BinaryExpr",):
        yield from _leaves(node.lhs, group, op)
        yield from _leaves(node.rhs, group, op)
    elif kind == "ParenExpr":
        yield from _leaves(node.expr, group, op)
    elif kind not in ("NumberLiteral",):
        raise UnsupportedQuery(kind)


@dataclass
class Evaluation:
    """Evaluates parsed queries at ``times`` over ``source``; ``window`` stands for ``$__rate_interval``
    and ``range_`` for ``$__range``."""

    source: Source
    times: Sequence[float]
    window: float
    range_: float
    lookback: float = 60.0

    def run(self, query: Query) -> Vector | float:
        return self._eval(query.root, ("",), "sum")

    def _eval(self, node: Any, group: tuple[str, ...], op: str) -> Vector | float:
        """``group`` and ``op``: the aggregation above (as ``_leaves`` walks), which names the leaf."""
        kind = type(node).__name__
        if kind == "NumberLiteral":
            return float(node.val)
        if kind == "ParenExpr":
            return self._eval(node.expr, group, op)
        if kind == "AggregateExpr":
            labels = tuple(node.modifier.labels) if node.modifier is not None else ()
            inner = self._eval(node.expr, labels, str(node.op))
            if isinstance(inner, float):
                raise UnsupportedQuery("aggregation of a scalar")
            return _aggregate(str(node.op), inner, labels)
        if kind == "Call":
            return self._call(node, group, op)
        if kind == "VectorSelector":  # a gauge, as its leaf keeps it
            leaf = Leaf(node.name, _matchers(node), group, op)
            return {
                s.labels: [s.at(t, counter=False, lookback=self.lookback) for t in self.times]
                for s in self.source.series(leaf)
            }
        if kind == "BinaryExpr":
            return self._binary(node, group, op)
        raise UnsupportedQuery(kind)

    def _call(self, node: Any, group: tuple[str, ...], op: str) -> Vector | float:
        name = node.func.name
        if name in ("rate", "increase"):
            matrix = node.args[0]
            if type(matrix).__name__ != "MatrixSelector":
                raise UnsupportedQuery(f"{name} of a subquery")
            selector = matrix.vector_selector
            leaf = Leaf(selector.name, _matchers(selector), group, "sum")
            window = self._window(matrix.range.total_seconds())
            out: Vector = {}
            for s in self.source.series(leaf):
                values: Values = []
                for t in self.times:
                    now = s.at(t, counter=True, lookback=self.lookback)
                    before = s.at(t - window, counter=True, lookback=self.lookback)
                    if now is None or before is None or t < s.start:
                        values.append(None)
                    else:
                        grown = max(0.0, now - before)
                        values.append(grown / window if name == "rate" else grown)
                out[s.labels] = values
            return out
        if name == "histogram_quantile":
            q = self._eval(node.args[0], group, op)
            buckets = self._eval(node.args[1], group, op)
            if not isinstance(q, float) or isinstance(buckets, float):
                raise UnsupportedQuery("histogram_quantile(scalar, vector)")
            return _quantile(q, buckets, len(self.times))
        if name == "vector":
            value = self._eval(node.args[0], group, op)
            if not isinstance(value, float):
                raise UnsupportedQuery("vector(scalar)")
            return {(): [value] * len(self.times)}
        raise UnsupportedQuery(f"function {name}")

    def _window(self, parsed: float) -> float:
        """``parse`` put 1m for ``$__rate_interval`` and 1h for ``$__range``; other windows are literal."""
        if parsed == 60:
            return self.window
        if parsed == 3600:
            return self.range_
        return min(parsed, MAX_RANGE_SECONDS)

    def _binary(self, node: Any, group: tuple[str, ...], aggregation: str) -> Vector | float:
        op = str(node.op)
        left = self._eval(node.lhs, group, aggregation)
        right = self._eval(node.rhs, group, aggregation)
        on: tuple[str, ...] | None = None
        if node.modifier is not None and node.modifier.matching is not None:
            if str(node.modifier.matching.type) != "LabelModifierType.Include":
                raise UnsupportedQuery("ignoring()")
            on = tuple(node.modifier.matching.labels)
        if op in ("and", "or"):
            if isinstance(left, float) or isinstance(right, float):
                raise UnsupportedQuery(f"{op} with a scalar")
            return _set_op(op, left, right, on, len(self.times))
        function = _ARITHMETIC.get(op)
        if function is None:
            raise UnsupportedQuery(f"operator {op}")
        if isinstance(left, float) and isinstance(right, float):
            result = function(left, right)
            return math.nan if result is None else result
        if isinstance(left, float):
            scalar = left
            assert not isinstance(right, float)
            return {
                labels: [None if v is None else _apply(function, op, scalar, v, v) for v in values]
                for labels, values in right.items()
            }
        if isinstance(right, float):
            scalar = right
            return {
                labels: [None if v is None else _apply(function, op, v, scalar, v) for v in values]
                for labels, values in left.items()
            }
        return _vector_op(function, op, left, right, on)


def _apply(
    function: Callable[[float, float], float | None], op: str, a: float, b: float, kept: float
) -> float | None:
    """``a op b``; a comparison keeps the vector's value where it holds and drops it elsewhere."""
    result = function(a, b)
    if op in _COMPARISONS:
        return kept if result else None
    return result


def _divide(a: float, b: float) -> float | None:
    if b == 0:
        return None if a == 0 else math.copysign(math.inf, a)  # Prometheus: NaN or ±Inf; drawn as a gap
    return a / b


_COMPARISONS = {">", "<", ">=", "<=", "==", "!="}
_ARITHMETIC: dict[str, Callable[[float, float], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _key(labels: Labels, on: tuple[str, ...] | None) -> Labels:
    return labels if on is None else tuple(p for p in labels if p[0] in on)


def _vector_op(
    function: Callable[[float, float], Any], op: str, left: Vector, right: Vector, on: tuple[str, ...] | None
) -> Vector:
    by_key = {_key(labels, on): values for labels, values in right.items()}
    out: Vector = {}
    for labels, values in left.items():
        other = by_key.get(_key(labels, on))
        if other is None:
            continue
        out[labels if op in _COMPARISONS else _key(labels, on)] = [
            None if a is None or b is None else _apply(function, op, a, b, a)
            for a, b in zip(values, other, strict=True)
        ]
    return out


def _set_op(op: str, left: Vector, right: Vector, on: tuple[str, ...] | None, steps: int) -> Vector:
    def present(vector: Vector) -> list[set[Labels]]:
        keys: list[set[Labels]] = [set() for _ in range(steps)]
        for labels, values in vector.items():
            for i, v in enumerate(values):
                if v is not None:
                    keys[i].add(_key(labels, on))
        return keys

    if op == "and":
        there = present(right)
        return {
            labels: [v if v is not None and _key(labels, on) in there[i] else None for i, v in enumerate(vs)]
            for labels, vs in left.items()
        }
    taken = present(left)
    out = dict(left)
    for labels, values in right.items():
        kept = [
            v if v is not None and _key(labels, on) not in taken[i] else None for i, v in enumerate(values)
        ]
        if labels in out:
            out[labels] = [a if a is not None else b for a, b in zip(out[labels], kept, strict=True)]
        else:
            out[labels] = kept
    return out


def _aggregate(op: str, vector: Vector, by: tuple[str, ...]) -> Vector:
    if op not in _AGGREGATIONS:
        raise UnsupportedQuery(f"aggregation {op}")
    groups: dict[Labels, list[Values]] = defaultdict(list)
    for labels, values in vector.items():
        groups[tuple(p for p in labels if p[0] in by)].append(values)
    out: Vector = {}
    for labels, members in groups.items():
        combined: Values = []
        for column in zip(*members, strict=True):
            present = [v for v in column if v is not None]
            if not present:
                combined.append(None)
            elif op == "sum":
                combined.append(math.fsum(present))
            elif op == "max":
                combined.append(max(present))
            elif op == "min":
                combined.append(min(present))
            else:
                combined.append(math.fsum(present) / len(present))
        out[labels] = combined
    return out


def _quantile(q: float, buckets: Vector, steps: int) -> Vector:
    """Prometheus's histogram_quantile: linear interpolation inside the bucket that holds the rank."""
    groups: dict[Labels, list[tuple[float, Values]]] = defaultdict(list)
    for labels, values in buckets.items():
        le = dict(labels).get("le")
        if le is None:
            continue
        groups[tuple(p for p in labels if p[0] != "le")].append((float(le), values))
    out: Vector = {}
    for labels, edges in groups.items():
        edges.sort(key=lambda pair: pair[0])
        result: Values = []
        for i in range(steps):
            counts = [(upper, values[i]) for upper, values in edges if values[i] is not None]
            result.append(_bucket_quantile(q, counts))
        out[labels] = result
    return out


def _bucket_quantile(q: float, counts: list[tuple[float, float | None]]) -> float | None:
    if len(counts) < 2 or counts[-1][0] != math.inf or math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    total = counts[-1][1] or 0.0
    if total <= 0:
        return None
    rank = q * total
    previous_upper, previous_count = 0.0, 0.0
    for upper, count in counts:
        assert count is not None
        if count >= rank:
            if upper == math.inf:
                return previous_upper  # in the +Inf bucket: the highest finite edge
            if previous_upper == 0.0 and upper <= 0:
                return upper
            width = count - previous_count
            return previous_upper + (upper - previous_upper) * (
                (rank - previous_count) / width if width else 0
            )
        previous_upper, previous_count = upper, count
    return previous_upper


def legend(template: str, labels: Labels) -> str:
    """Grafana's legend format: ``{{label}}`` replaced by the label's value; ``__auto`` the label set."""
    values = dict(labels)
    if template == "__auto":
        return ", ".join(f"{k}={v}" for k, v in labels if k != "instance") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values.get(m.group(1), ""), template)
