"""The provider's HTTP/1.1 client (llm/http1.py) against real servers on loopback that answer exactly the
bytes a test scripts: every way a body can be framed, encoded, cut or refused, kept-alive connections and
their end, the deadline, the bound on connections, TLS."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agentic_backend.llm.http1 import AnswerTooLarge, Http1Client

pytestmark = pytest.mark.integration

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Handler = Callable[[Reader, Writer], Awaitable[None]]


class Wire:
    """A server whose ``handler`` answers each request; it counts connections and requests."""

    def __init__(self, answer: Callable[[int, bytes], bytes | None]) -> None:
        self.answer = answer  # (request number, its body) -> the bytes to send; None: close instead
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.delay = 0.0  # before answering, unless the client hangs up first
        self.close_after: set[int] = set()  # request numbers after whose answer the server hangs up

    async def handle(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                if self.delay:
                    try:
                        if not await asyncio.wait_for(reader.read(1), self.delay):
                            break  # the client hung up
                    except TimeoutError:
                        pass
                reply = self.answer(len(self.requests), body)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                framed = b"content-length" in reply.lower() or b"transfer-encoding: chunked" in reply.lower()
                if not framed or len(self.requests) in self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def serving(wire: Wire, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: Reader, writer: Writer) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await wire.handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1/chat/completions?x=1"
    finally:
        server.close()
        for task in handlers:  # each connection's end, within the test's loop
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def ok(body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra.encode(), body)


HEADERS = {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}


async def test_a_request_is_sent_as_built_and_its_connection_kept_for_the_next() -> None:
    wire = Wire(lambda n, body: ok(b'{"n": %d}' % n, "X-Should-Retry: false"))
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS)
        first = await client.post(b'{"q": 1}', timeout=5)
        second = await client.post(b'{"q": 2}', timeout=5)
        await client.close()
    assert (first.status, first.body, second.body) == (200, b'{"n": 1}', b'{"n": 2}')
    assert first.headers["x-should-retry"] == "false"  # names in lower case
    assert wire.connections == 1
    head, body = wire.requests[0]
    port = url.split(":")[2].split("/")[0]
    assert head.startswith(
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n" % port.encode()
    )
    assert b"Authorization: Bearer sk-test\r\n" in head
    assert b"Content-Length: 8\r\n" in head
    assert body == b'{"q": 1}'


@pytest.mark.parametrize(
    "framing",
    ["chunked", "close-delimited", "interim 103 first", "split in bytes"],
)
async def test_every_framing_of_an_answer_is_read_whole(framing: str) -> None:
    text = b'{"choices": [' + b'"word", ' * 500 + b'"end"]}'
    if framing == "chunked":
        pieces = [text[i : i + 700] for i in range(0, len(text), 700)]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    elif framing == "close-delimited":
        reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + text
    elif framing == "interim 103 first":
        reply = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(text)
    else:
        reply = ok(text)
    wire = Wire(lambda n, body: reply)
    if framing == "split in bytes":

        async def trickle(reader: Reader, writer: Writer) -> None:
            await reader.readuntil(b"\r\n\r\n")
            for i in range(0, len(reply), 997):
                writer.write(reply[i : i + 997])
                await writer.drain()
                await asyncio.sleep(0)
            await reader.read()  # the client keeps the connection
            writer.close()

        wire.handle = trickle  # type: ignore[method-assign]
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS)
        answer = await client.post(b"{}", timeout=5)
        await client.close()
    assert (answer.status, answer.body) == (200, text)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw deflate"])
async def test_a_compressed_answer_is_decoded(encoding: str) -> None:
    text = b'{"text": "' + b"abc" * 1000 + b'"}'
    if encoding == "gzip":
        packed = gzip.compress(text)
    elif encoding == "deflate":
        packed = zlib.compress(text)
    else:
        squeezer = zlib.compressobj(wbits=-15)
        packed = squeezer.compress(text) + squeezer.flush()
    name = encoding.split()[-1]
    wire = Wire(lambda n, body: ok(packed, f"Content-Encoding: {name}"))
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS)
        answer = await client.post(b"{}", timeout=5)
        await client.close()
    assert answer.body == text


async def test_answers_past_the_bound_or_not_http_are_refused_and_their_connection_dropped() -> None:
    cases: list[tuple[bytes, type[Exception]]] = [
        (ok(b"x" * 5000), AnswerTooLarge),
        (ok(gzip.compress(b"x" * 50_000), "Content-Encoding: gzip"), AnswerTooLarge),  # small, decoded large
        (ok(b"x" * 10, "Content-Encoding: br"), ConnectionError),  # not asked for
        (ok(b"not gzip", "Content-Encoding: gzip"), ConnectionError),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", ConnectionError),
        (b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * 100_000, ConnectionError),  # a head past 64 KiB
        (
            b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 10_000 + b"Content-Length: 2\r\n\r\nok",
            ConnectionError,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut short", ConnectionError),
    ]
    for reply, error in cases:
        wire = Wire(lambda n, body, reply=reply: reply if n == 1 else ok(b"fine"))
        wire.close_after = {1}
        async with serving(wire) as url:
            client = Http1Client(url, HEADERS, max_body=4096)
            with pytest.raises(error):
                await client.post(b"{}", timeout=5)
            # the next request does not inherit the broken connection
            assert (await client.post(b"{}", timeout=5)).body == b"fine", reply[:40]
            await client.close()
        assert wire.connections == 2, reply[:40]


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    wire = Wire(lambda n, body: ok(b"fine"))
    closers: list[Writer] = []
    plain = wire.handle

    async def remembered(reader: Reader, writer: Writer) -> None:
        closers.append(writer)
        await plain(reader, writer)

    wire.handle = remembered  # type: ignore[method-assign]
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS)
        await client.post(b"{}", timeout=5)
        closers[0].close()  # the server's keep-alive timeout
        await asyncio.sleep(0.1)
        assert (await client.post(b"{}", timeout=5)).body == b"fine"
        await client.close()
    assert wire.connections == 2


async def test_a_connection_idle_past_its_time_is_closed_not_reused() -> None:
    wire = Wire(lambda n, body: ok(b"fine"))
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS, idle_seconds=0.2)
        await client.post(b"{}", timeout=5)
        await client.post(b"{}", timeout=5)
        assert wire.connections == 1
        await asyncio.sleep(0.3)
        await client.post(b"{}", timeout=5)
        assert wire.connections == 2
        await asyncio.sleep(0.05)
        assert wire.open == 1  # the stale one was closed, not left open
        await client.close()


async def test_the_deadline_covers_the_whole_exchange_and_frees_the_connection() -> None:
    wire = Wire(lambda n, body: ok(b"late"))
    wire.delay = 3
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS)
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await client.post(b"{}", timeout=0.3)
        assert asyncio.get_running_loop().time() - started < 1
        await asyncio.sleep(0.1)
        assert wire.open == 0  # the client hung up
        task = asyncio.create_task(client.post(b"{}", timeout=5))
        await asyncio.sleep(0.2)
        task.cancel()  # a caller that goes away takes its connection with it
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert wire.open == 0
        await client.close()


async def test_requests_past_the_limit_wait_for_a_connection() -> None:
    wire = Wire(lambda n, body: ok(b"fine"))
    wire.delay = 0.1
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS, limit=2)
        answers = await asyncio.gather(*(client.post(b"{}", timeout=5) for _ in range(6)))
        await client.close()
    assert [a.body for a in answers] == [b"fine"] * 6
    assert wire.most_open == 2
    assert wire.connections == 2


async def test_a_request_waiting_for_a_slot_keeps_its_deadline_and_the_slots_stay_counted() -> None:
    wire = Wire(lambda n, body: ok(b"fine"))
    wire.delay = 0.5
    async with serving(wire) as url:
        client = Http1Client(url, HEADERS, limit=1)
        first = asyncio.create_task(client.post(b"{}", timeout=5))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):  # no slot before its deadline
            await client.post(b"{}", timeout=0.1)
        cancelled = asyncio.create_task(client.post(b"{}", timeout=5))
        await asyncio.sleep(0.05)
        cancelled.cancel()  # a caller that leaves the queue
        assert (await first).body == b"fine"
        wire.delay = 0
        answers = await asyncio.gather(*(client.post(b"{}", timeout=5) for _ in range(4)))
        assert [a.body for a in answers] == [b"fine"] * 4  # the slot came back each time
        await client.close()
    assert wire.most_open == 1


async def test_a_refused_connection_is_an_os_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = Http1Client(f"http://127.0.0.1:{port}/v1", HEADERS)
    with pytest.raises(ConnectionRefusedError):
        await client.post(b"{}", timeout=5)
    await client.close()


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("ftp://127.0.0.1/v1", HEADERS),
        ("http:///v1", HEADERS),
        ("http://127.0.0.1/v1", {"Authorization": "Bearer sk\r\nX-Injected: 1"}),
        ("http://127.0.0.1/v1", {"X-Bad:Name": "1"}),
    ],
)
def test_a_url_or_header_that_would_split_the_request_is_refused_up_front(
    url: str, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match=r"URL|split"):
        Http1Client(url, headers)


def _certificate(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


async def test_tls_is_verified_against_the_system_s_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = _certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    wire = Wire(lambda n, body: ok(b"secret"))
    async with serving(wire, tls) as url:
        untrusting = Http1Client(url, HEADERS)  # the certificate is nobody's: refused
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusting.post(b"{}", timeout=5)
        await untrusting.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the system's trust, as OpenSSL reads it
        trusting = Http1Client(url, HEADERS)
        assert (await trusting.post(b"{}", timeout=5)).body == b"secret"
        assert (await trusting.post(b"{}", timeout=5)).body == b"secret"
        await trusting.close()
    assert wire.connections == 1  # one kept for both requests (a refused handshake never reaches it)
