"""Errors of the monitoring API (see ``core.errors`` for the whole hierarchy)."""

from __future__ import annotations

from agentic_backend.core.errors import Conflict, Unprocessable


class InvalidMetric(Unprocessable):
    """A custom metric record is malformed: its name, labels, type or value."""


class MetricConflict(Conflict):
    """A custom metric record disagrees with a metric that already exists (its type, labels or buckets),
    or takes a name the service reserves."""


class SeriesLimitExceeded(Unprocessable):
    """Accepting a record would pass a cap on the number of custom series."""
