from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.harness import LOOPBACK, Prometheus, Service, Webhook, scrape_config


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
