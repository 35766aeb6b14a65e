"""The tools agents may call: safe arithmetic and a search over a small local document set."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentic_backend.llm.base import ToolSpec


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPRESSION = 200
_MAX_MAGNITUDE = 1e100


def calculate(expression: str) -> str:
    """Evaluate + - * / // % ** and parentheses over numbers: no names, calls or attributes, and bounded
    sizes (a huge power would otherwise take the CPU for minutes)."""
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError(f"expression longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return float(_UNARY[type(node.op)](walk(node.operand)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or abs(left) > 1e10):
                raise ToolError("exponent too large")
            try:
                value = float(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            except OverflowError:
                raise ToolError("result too large") from None
            if not math.isfinite(value) or abs(value) > _MAX_MAGNITUDE:
                raise ToolError("result too large")
            return value
        raise ToolError("only numbers and + - * / // % ** ( ) are allowed")

    result = walk(tree)
    return str(int(result)) if result.is_integer() and abs(result) < 1e15 else repr(result)


DOCUMENTS: tuple[tuple[str, str], ...] = (
    (
        "Request rate",
        "The request rate is sum(rate(http_requests_total[5m])): requests per second over five minutes.",
    ),
    (
        "Error ratio",
        "The error ratio divides 5xx responses by all responses; alert on it, never on an absolute rate.",
    ),
    (
        "Latency",
        "Latency percentiles come from http_request_duration_seconds buckets via histogram_quantile.",
    ),
    (
        "Cost",
        "LLM spend is api_cost_dollars_total by provider and model; increase over 1h gives dollars per hour.",
    ),
    ("Tokens", "api_tokens_total counts input and output tokens per provider and model."),
    (
        "Cache",
        "The response cache answers identical stateless queries at zero cost; "
        "its hit ratio is hits over gets.",
    ),
    ("Sessions", "A session holds a conversation's history and expires after an idle time-to-live."),
    ("Budgets", "Each API key may have a monthly dollar budget; past it, queries are refused with HTTP 402."),
    (
        "Security",
        "Authentication failures and permission denials are counted; brute force earns a cool-down.",
    ),
)


def search_documents(query: str, limit: int = 3) -> str:
    words = {w for w in re.findall(r"[a-z0-9_]+", query.lower()) if len(w) > 2}
    scored = []
    for title, text in DOCUMENTS:
        haystack = set(re.findall(r"[a-z0-9_]+", f"{title} {text}".lower()))
        score = len(words & haystack)
        if score:
            scored.append((score, title, text))
    if not scored:
        return "No document matches."
    scored.sort(key=lambda row: (-row[0], row[1]))
    return "\n".join(f"{title}: {text}" for _, title, text in scored[:limit])


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    run: Callable[[dict[str, Any]], Awaitable[str]]


def _string_argument(arguments: dict[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str):
        raise ToolError(f"argument {name!r} must be a string")
    return value


async def _calculate(arguments: dict[str, Any]) -> str:
    return calculate(_string_argument(arguments, "expression"))


async def _search(arguments: dict[str, Any]) -> str:
    return search_documents(_string_argument(arguments, "query"))


TOOLS: dict[str, Tool] = {
    "calculate": Tool(
        ToolSpec(
            "calculate",
            "Evaluate an arithmetic expression with + - * / // % ** and parentheses.",
            {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
        ),
        _calculate,
    ),
    "search_documents": Tool(
        ToolSpec(
            "search_documents",
            "Search the local documentation; returns the best-matching passages.",
            {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        ),
        _search,
    ),
}
