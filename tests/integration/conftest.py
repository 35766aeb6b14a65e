from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Prometheus, Service, scrape_config


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    process = Service(tmp_path)
    yield process
    process.stop()


@pytest.fixture
def prometheus(tmp_path: Path, service: Service) -> Iterator[Prometheus]:
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    process = Prometheus(workdir, scrape_config(f"127.0.0.1:{service.port}"))
    yield process
    process.stop()
