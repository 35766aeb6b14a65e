from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright import sync_api as playwright_api
from playwright.sync_api import Browser

from tests.integration.harness import LOOPBACK, Prometheus, Service, Webhook, require_binary, scrape_config


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


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            hook.received.append((self.path, time.time(), json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    hook.url = f"http://{LOOPBACK}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright (the bootstrap installs it; in CI a missing one fails)."""
    chromium = require_binary("chromium")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()
