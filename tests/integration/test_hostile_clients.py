"""Hostile clients against the real server (core/httpguard.py): endless, oversized and numerous headers,
slow heads, slow bodies, connections that never send, idle keep-alive connections. Each is refused with
the status HTTP gives (431, 414, 408) or closed, within its limit, while a second client's /health stays
under 100 ms at p99 and the worker's memory within 64 MB of its start. And proxy headers: ignored unless
``serve --proxy-headers`` is given."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import LOOPBACK, Service

pytestmark = pytest.mark.integration

TIMEOUT = 2.0  # the head and body timeouts these tests run with
LIMITS = {
    "AGENTIC_HTTP_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
    "AGENTIC_HTTP_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
}


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Bystander:
    """Another client: /health every 50 ms on a kept-alive connection, and the worker's memory."""

    def __init__(self, service: Service) -> None:
        self.url = f"{service.url}/api/v1/monitoring/health"
        self.pid = service.popen.pid
        self.times: list[float] = []
        self.peak = self.start_rss = _rss(self.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(0.05):
                started = time.perf_counter()
                assert client.get(self.url).status_code == 200
                self.times.append(time.perf_counter() - started)
                self.peak = max(self.peak, _rss(self.pid))

    def check(self) -> None:
        deadline = time.monotonic() + 10
        while len(self.times) < 20 and time.monotonic() < deadline:  # at least a second of probes
            time.sleep(0.05)
        self._stop.set()
        self._thread.join()
        ordered = sorted(self.times)
        assert len(ordered) > 20
        p99 = ordered[int(0.99 * (len(ordered) - 1))]
        assert p99 < 0.1, f"/health p99 {p99 * 1000:.0f} ms beside the hostile client"
        assert self.peak - self.start_rss < 64 * 2**20, (
            f"the worker grew by {(self.peak - self.start_rss) >> 20} MB"
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(
        tmp_path_factory.mktemp("hostile"), env=LIMITS, serve_args=["--timeout-keep-alive", "1"]
    )
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def connection(service: Service) -> Iterator[socket.socket]:
    sock = socket.create_connection((LOOPBACK, service.port), timeout=15)
    try:
        yield sock
    finally:
        sock.close()


def answer(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """The status and JSON body of the server's answer, read until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def send_until_closed(sock: socket.socket, chunks: Callable[[], bytes], seconds: float) -> tuple[int, bool]:
    """Send chunks for up to ``seconds``: the bytes sent, and whether the server closed the connection
    (rather than the time running out)."""
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sent += sock.send(chunks())
        except OSError:  # reset or broken pipe: the server closed
            return sent, True
    return sent, False


def kernel_buffers() -> int:
    """The most a loopback connection can hold in flight: both ends' largest socket buffers (what a client
    can send that the server never read)."""
    most = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        most += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    return most


def test_head_sends_no_body_and_the_connection_serves_the_next_request(service: Service) -> None:
    """HEAD answers with GET's headers and no body bytes: any leaked into the kept-alive connection would
    be read as the start of the next response (http.client then fails on its status line)."""
    connection = http.client.HTTPConnection(LOOPBACK, service.port, timeout=10)
    try:
        for path in ("/", "/api/v1/monitoring/health", "/api/v1/monitoring/metrics"):
            connection.request("HEAD", path)
            head = connection.getresponse()
            assert (head.status, head.read()) == (200, b"")
            connection.request("GET", path)
            got = connection.getresponse()
            body = got.read()
            assert got.status == 200
            assert body
            assert head.getheader("content-type") == got.getheader("content-type")
            # The same headers as the GET; the health check's body changes between two requests.
            assert (head.getheader("content-length") is None) == (got.getheader("content-length") is None)
            if path == "/":
                assert head.getheader("content-length") == got.getheader("content-length") == str(len(body))
    finally:
        connection.close()


def test_an_endless_header_is_cut_at_the_limit(service: Service) -> None:
    bystander = Bystander(service)
    results: list[tuple[int, bool]] = []

    def attack() -> None:  # again and again for 4 s: each connection is cut, the next one begins
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            with connection(service) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
                results.append(send_until_closed(sock, lambda: b"a" * 262_144, 8))

    attackers = [threading.Thread(target=attack) for _ in range(2)]
    for thread in attackers:
        thread.start()
    for thread in attackers:
        thread.join()
    bystander.check()
    # Each connection cut by the server once the 32 KiB limit was passed, not after 8 s of 256 KiB chunks
    # (GBs): what it took is the limit and what the kernel held in flight, however busy the machine.
    assert len(results) >= 4
    assert all(closed for _, closed in results), results
    assert all(sent < 32 * 1024 + kernel_buffers() for sent, _ in results), results


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200_000 + b"\r\n\r\n", 431, "HeaderFieldsTooLarge"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n",
            431,
            "HeaderFieldsTooLarge",
        ),
        (b"GET /" + b"u" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "UriTooLong"),
    ],
    ids=["oversized-header", "many-headers", "long-url"],
)
def test_oversized_heads_get_the_status_http_gives(
    service: Service, request_bytes: bytes, status: int, error: str
) -> None:
    with connection(service) as sock:
        with contextlib.suppress(OSError):  # closed while we sent: the answer is still there to read
            sock.sendall(request_bytes)
        got, body = answer(sock)
    assert got == status
    assert body["error"] == error
    assert "AGENTIC_HTTP_" in body["detail"]


def test_a_head_at_the_limit_is_served(service: Service) -> None:
    headers = {f"x-h{i}": "v" * 200 for i in range(90)}  # about 20 KiB in 92 fields: under both limits
    response = httpx.get(f"{service.url}/api/v1/monitoring/health", headers=headers)
    assert response.status_code == 200


def test_a_slow_head_gets_408_at_its_timeout(service: Service) -> None:
    bystander = Bystander(service)
    with connection(service) as sock:
        started = time.monotonic()
        for byte in b"GET /api/v1/monitoring/health HTTP/1.1\r\nHost: x\r\n":
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        status, body = answer(sock)
        elapsed = time.monotonic() - started
    bystander.check()
    assert status == 408
    assert body["error"] == "RequestTimeout"
    assert TIMEOUT - 0.2 <= elapsed < TIMEOUT + 2


def test_a_slow_body_gets_408(service: Service) -> None:
    bystander = Bystander(service)
    with connection(service) as sock:
        sock.sendall(
            b"POST /api/v1/monitoring/record HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + service.admin_key.encode() + b"\r\nContent-Length: 100000\r\n\r\n"
        )
        started = time.monotonic()
        send_until_closed(sock, lambda: (time.sleep(0.05), b"{")[1], 8)
        status, body = answer(sock)
    bystander.check()
    assert status == 408
    assert "bytes a second" in body["detail"]
    assert time.monotonic() - started < TIMEOUT + 3


def test_connections_that_never_send_and_idle_keep_alives_are_closed(service: Service) -> None:
    bystander = Bystander(service)
    silent = [socket.create_connection((LOOPBACK, service.port), timeout=15) for _ in range(100)]
    idle = []
    for _ in range(50):
        sock = socket.create_connection((LOOPBACK, service.port), timeout=15)
        sock.sendall(b"GET /api/v1/monitoring/health HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.append(sock)
    started = time.monotonic()
    try:
        for sock in silent:
            assert sock.recv(1) == b""  # closed without a word at the head timeout
        silent_closed = time.monotonic() - started
        for sock in idle:
            data = b""
            while chunk := sock.recv(65536):  # the answer, then the close at the keep-alive timeout
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
    finally:
        for sock in silent + idle:
            sock.close()
    bystander.check()
    assert silent_closed < TIMEOUT + 2


def test_proxy_headers_are_ignored_unless_asked_for(tmp_path: Path) -> None:
    service = Service(tmp_path, env={"AGENTIC_AUTH_FAILURE_LIMIT": "5"})
    try:
        summary = f"{service.url}/api/v1/monitoring/summary"
        bad = {"authorization": "Bearer agb_wrongwrongwrong_guess"}
        # Rotating X-Forwarded-For does not escape the guard: the address counted is the peer's.
        codes = [
            httpx.get(summary, headers={**bad, "x-forwarded-for": f"203.0.113.{n}"}).status_code
            for n in range(4)
        ]
        # Nor does naming another address put that address into the cool-down.
        codes += [
            httpx.get(summary, headers={**bad, "x-forwarded-for": "127.0.0.77"}).status_code for _ in range(4)
        ]
        assert codes == [401] * 5 + [429] * 3
        from_there = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.77"))
        with from_there:
            assert from_there.get(summary, headers=bad).status_code == 401  # its own first failure
    finally:
        service.stop()
