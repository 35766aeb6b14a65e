from __future__ import annotations

import pytest

from agentic_backend.agents.tools import ToolError, calculate, search_documents
from agentic_backend.llm.sim import find_expression


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("1+2*3", "7"),
        ("(1+2)*3", "9"),
        ("2**10", "1024"),
        ("2^3", "8"),
        ("7/2", "3.5"),
        ("-4 % 3", "2"),
        ("1e3+1", "1001"),
    ],
)
def test_arithmetic(expression: str, result: str) -> None:
    assert calculate(expression) == result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "only numbers"),
        ("a + 1", "only numbers"),
        ("9**9**9", "too large"),
        ("1/0", "division by zero"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 300, "longer than"),
        ("True + 1", "only numbers"),
    ],
)
def test_unsafe_or_broken_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        calculate(expression)


def test_document_search_ranks_by_overlap() -> None:
    found = search_documents("how do I alert on the error ratio")
    assert found.splitlines()[0].startswith("Error ratio:")
    assert search_documents("zzzz qqqq") == "No document matches."


@pytest.mark.parametrize(
    ("query", "expression"),
    [
        ("what is 12*(3+4)?", "12*(3+4)"),
        ("What is (1024-24)/8?", "(1024-24)/8"),
        ("and 2**10?", "2**10"),
        ("hello 42", None),
        ("1 2 3", None),
        ("1 " * 10_000, None),  # a long run of digits and spaces: found in linear time, not by backtracking
        ("1 " * 10_000 + "+ 1", ("1 " * 10_000 + "+ 1").strip()),
    ],
)
def test_sim_finds_arithmetic_in_a_query(query: str, expression: str | None) -> None:
    assert find_expression(query) == expression
