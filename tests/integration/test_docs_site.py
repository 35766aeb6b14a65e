"""The documentation site as a reader sees it: built with ``mkdocs build --strict`` and opened in Debian's
Chromium; every page of the navigation loads without a script error, the generated references hold every
metric of the catalogue and every setting, and the site's search finds a page. Screenshots of the home,
metrics and configuration pages go to ``build/docs-screenshots/``."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from playwright.sync_api import Browser, Page

from agentic_backend.core.config import Settings
from agentic_backend.metricstore.registry import SERIES_OVERFLOW
from agentic_backend.monitoring.catalogue import CATALOGUE, GENAI_CATALOGUE
from tests.helpers import ROOT

pytestmark = pytest.mark.integration

SHOTS = ROOT / "build" / "docs-screenshots"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def _pages() -> list[str]:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    return [next(iter(entry.values())) for entry in nav]


def test_every_page_loads_and_the_references_are_complete(site: str, page: Page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    SHOTS.mkdir(parents=True, exist_ok=True)
    for source in _pages():
        path = "/" if source == "index.md" else f"/{source.removesuffix('.md')}/"
        response = page.goto(site + path)
        assert response is not None
        assert response.status == 200, path
        assert page.locator("article h1").first.is_visible(), path
        if source in {"index.md", "metrics.md", "configuration.md"}:
            page.screenshot(path=str(SHOTS / f"{source.removesuffix('.md')}.png"), full_page=False)
    assert not errors, errors

    page.goto(site + "/metrics/")
    terms = page.locator("dt > code:first-child").all_inner_texts()
    assert sorted(terms) == sorted(
        {spec.name for spec in (*CATALOGUE, *GENAI_CATALOGUE)} | {SERIES_OVERFLOW.name}
    )
    page.goto(site + "/configuration/")
    terms = page.locator("dt > code:first-child").all_inner_texts()
    assert terms == [f"AGENTIC_{name.upper()}" for name in Settings.model_fields]
    assert "<data_dir>" in page.locator("dd").all_inner_texts()[2]  # text, not a tag


def test_the_search_finds_a_page(site: str, page: Page) -> None:
    page.goto(site + "/")
    page.keyboard.press("/")  # Material's shortcut for the search box
    page.keyboard.type("brute-force guard")
    result = page.locator(".md-search-result__item").first
    result.wait_for(timeout=15000)
    assert "brute" in result.inner_text().lower()
