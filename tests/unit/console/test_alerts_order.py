"""The console's alerts come in the order a person on call reads them."""

from __future__ import annotations

from agentic_backend.console.router import Alert, ordered


def alert(name: str, severity: str, state: str, since: str = "2026-12-05T02:46:24Z") -> Alert:
    return Alert(name=name, severity=severity, state=state, summary="", since=since)


def test_firing_then_pending_then_silenced_and_the_most_severe_first() -> None:
    found = [
        alert("AgentQueryErrors", "warning", "suppressed"),
        alert("ErrorBudgetBurnSlow", "warning", "active"),
        alert("Watchdog", "info", "active", since="2026-12-05T02:46:18Z"),
        alert("ErrorBudgetBurnFast", "critical", "active"),
        alert("HighLatency", "warning", "pending"),
        alert("Custom", "", "firing"),
        alert("Older", "warning", "active", since="2026-12-05T01:00:00Z"),
    ]
    assert [a.name for a in ordered(found)] == [
        "ErrorBudgetBurnFast",
        "Older",
        "ErrorBudgetBurnSlow",
        "Watchdog",
        "Custom",
        "HighLatency",
        "AgentQueryErrors",
    ]


def test_unknown_states_and_severities_do_not_fail() -> None:
    found = [alert("b", "sev9", "weird", since=""), alert("a", "critical", "weird")]
    assert [a.name for a in ordered(found)] == ["a", "b"]
