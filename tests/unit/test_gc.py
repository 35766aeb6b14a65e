"""The collector's thresholds a worker runs with (AGENTIC_GC_THRESHOLD)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from agentic_backend.app import create_app
from agentic_backend.core.config import Settings
from tests.conftest import ClientFor


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("thresholds")
@pytest.mark.parametrize(
    ("setting", "expected"),
    [(4321, (4321, 20, 100)), (0, (700, 10, 10))],  # 0: Python's thresholds, as the process had them
)
async def test_start_up_sets_the_youngest_generations_threshold(
    make_settings: Callable[..., Settings], client_for: ClientFor, setting: int, expected: tuple[int, ...]
) -> None:
    gc.set_threshold(700, 10, 10)
    async with client_for(create_app(make_settings(gc_threshold=setting))):
        assert gc.get_threshold() == expected


def test_the_default_is_ten_thousand() -> None:
    assert Settings.model_fields["gc_threshold"].default == 10_000
