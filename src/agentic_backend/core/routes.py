"""What the HTTP layer calls a request's route, for logs and metrics alike."""

from __future__ import annotations

# The route template of a request no route matched: one value for every unknown path, so that a label or
# a log field never takes a value from free client input.
UNMATCHED_ENDPOINT = "__unmatched__"
