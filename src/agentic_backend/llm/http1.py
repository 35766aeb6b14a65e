"""A small HTTP/1.1 client for the agent path's most frequent request: POST a body to one origin (a
provider's chat-completions URL) and read the whole answer, on kept-alive connections.

Written by hand because the well-kept client costs a quarter of the service's CPU per chat completion:
against the same local server, aiohttp's ``ClientSession.post`` costs 200-230 µs of CPU a call and this
client 65-70 µs (``uv run python -m bench.http_client``), out of about 550 µs the service spends on a whole
chat completion. It is small because it does one thing: the request's head is built once (only
``Content-Length`` changes), the answer is parsed by httptools (llhttp, the parser uvicorn serves with:
``Content-Length``, chunked and close-delimited bodies), and nothing else is offered. It speaks TLS (the
system's CA store, as aiohttp did) and decodes gzip and deflate, though it never asks for them. What it does
not do, a proxy, stays with aiohttp (llm/openai_provider.py).

Bounded: the whole exchange (connecting, TLS, sending, the answer) is under one deadline, an answer's head
is refused past ``MAX_HEAD`` bytes and its body past ``max_body``, at most ``limit`` requests are in flight
(so at most that many connections are open), and an idle connection is closed after ``idle_seconds``,
before the servers that close theirs soonest (uvicorn's 5 s) would.

Errors: ``TimeoutError`` past the deadline; ``ConnectionError`` (an ``OSError``, like a refused or failed
connect) when the connection fails or closes before a whole answer, or the answer is not HTTP;
``AnswerTooLarge`` past ``max_body``. A connection that failed is never reused.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

MAX_BODY = 16 * 1024 * 1024  # bytes: a chat completion of 100k tokens is under 1 MiB
MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers: llhttp itself sets no bound


class AnswerTooLarge(Exception):
    """The answer's body passed the client's ``max_body``."""


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its answer read into memory."""

    def __init__(self, max_body: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._new_answer()
        self._until_close = False  # the body ends when the server closes (no length, not chunked)
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # bytes nobody asked for: not a server to keep
            self.close()
            return
        try:
            self._parser.feed_data(data)
            if self._head >= 0:
                self._head += len(data)
                if self._head > MAX_HEAD:
                    self._fail(ConnectionError(f"an answer's head passed {MAX_HEAD} bytes"))
        except httptools.HttpParserError as exc:  # a callback's own error is the context of its wrapper
            cause = exc.__context__
            known = isinstance(cause, (AnswerTooLarge, ConnectionError))
            self._fail(cause if known else ConnectionError("not an HTTP answer"))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._until_close and self._status:  # a close-delimited body ends here
            self._complete(keep=False)
        else:
            self._waiter.set_exception(ConnectionError("the connection closed before a whole answer"))

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD:  # a head that came whole in one read: data_received never saw it
            raise ConnectionError(f"an answer's head passed {MAX_HEAD} bytes")
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._head = -1
        self._status = self._parser.get_status_code()
        chunked = "chunked" in self._headers.get("transfer-encoding", "").lower()
        self._until_close = not chunked and "content-length" not in self._headers

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            raise AnswerTooLarge(f"the answer passed {self._max_body} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete(self._parser.should_keep_alive())

    # the client's side

    def request(self, data: bytes, deadline: float) -> asyncio.Future[tuple[Answer, bool]]:
        """Send one whole request; the future is its answer and whether the connection can be reused, or
        TimeoutError at ``deadline`` (the loop's time). A timer of the loop's own rather than
        ``asyncio.timeout``, which cost a quarter of this client's CPU a call."""
        assert self._transport is not None
        self._waiter = waiter = self._loop.create_future()
        self._deadline = self._loop.call_at(deadline, self._fail, TimeoutError())
        waiter.add_done_callback(self._settled)
        self._new_answer()
        self._transport.write(data)
        return waiter

    def _settled(self, _: asyncio.Future[tuple[Answer, bool]]) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _new_answer(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0  # bytes of the body
        self._head = 0  # bytes received while the answer's head is not complete; -1 once it is
        self._head_bytes = 0  # bytes of the headers parsed

    def usable(self) -> bool:
        return not self.closed and self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _complete(self, keep: bool) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if 100 <= self._status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._new_answer()
            return
        body = b"".join(self._body)
        encoding = self._headers.get("content-encoding", "identity").lower()
        try:
            if encoding in ("gzip", "x-gzip", "deflate"):
                body = _decoded(body, encoding, self._max_body)
            elif encoding != "identity":
                raise ConnectionError(f"an answer in an encoding not asked for ({encoding[:20]})")
        except (ConnectionError, AnswerTooLarge) as exc:
            self._fail(exc)
            return
        self._waiter.set_result((Answer(self._status, self._headers, body), keep))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()


def _decoded(body: bytes, encoding: str, max_body: int) -> bytes:
    # wbits 47: a gzip or zlib header, detected; deflate without one (-15) is what some servers send
    wbits = 47 if encoding != "deflate" or body[:1] == b"\x78" else -15
    decoder = zlib.decompressobj(wbits)
    try:
        decoded = decoder.decompress(body, max_body + 1)
    except zlib.error:
        raise ConnectionError(f"a {encoding} answer that does not decode") from None
    if len(decoded) > max_body:
        raise AnswerTooLarge(f"the answer passed {max_body} bytes, decoded")
    return decoded


def _header_block(url: str, headers: Mapping[str, str]) -> tuple[str, int, bool, bytes]:
    """The host, port, whether TLS, and the request's head up to its Content-Length."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if parts.port is not None:
        host += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            continue  # this client's own
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"a header that would split the request: {name!r}")
        lines.append(f"{name}: {value}")
    return parts.hostname, port, tls, ("\r\n".join(lines) + "\r\n").encode()


class Http1Client:
    """POSTs to one URL on a pool of kept-alive connections (the most recently used first)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        limit: int = 1000,
        idle_seconds: float = 4.0,
        max_body: int = MAX_BODY,
    ) -> None:
        self._host, self._port, tls, self._head = _header_block(url, headers)
        self._ssl = ssl.create_default_context() if tls else None
        self._idle: list[_Connection] = []  # oldest first
        self._idle_seconds = idle_seconds
        self._max_body = max_body
        # At most ``limit`` requests in flight: a count and a queue rather than asyncio.Semaphore, whose
        # three coroutines were 7 % of this client's instructions a call.
        self._limit = limit
        self._busy = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def post(self, body: bytes, timeout: float) -> Answer:
        """POST ``body``; the whole answer, whatever its status, within ``timeout`` seconds."""
        if self._closed:
            raise ConnectionError("the client is closed")
        data = b"%sContent-Length: %d\r\n\r\n%s" % (self._head, len(body), body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._busy < self._limit:
            self._busy += 1
        else:  # wait for a slot, until the deadline
            await self._wait_for_slot(deadline)
        try:
            connection = self._reuse()
            if connection is None:
                async with asyncio.timeout_at(deadline):
                    connection = await self._connect()
            try:
                answer, keep = await connection.request(data, deadline)
            except BaseException:  # failed, timed out or cancelled: the connection is in an unknown state
                connection.close()
                raise
        finally:
            self._release()
        if keep and not self._closed and connection.usable():
            connection.idle_since = loop.time()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _wait_for_slot(self, deadline: float) -> None:
        slot = asyncio.get_running_loop().create_future()
        self._waiting.append(slot)
        try:
            async with asyncio.timeout_at(deadline):
                await slot
        except BaseException:
            if slot.done() and not slot.cancelled():  # handed a slot while leaving: pass it on
                self._release()
            raise

    def _release(self) -> None:
        """A request's slot to the first that waits for one, else back to the pool."""
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot changes hands: the count stays
                return
        self._busy -= 1

    def _reuse(self) -> _Connection | None:
        stale = asyncio.get_running_loop().time() - self._idle_seconds
        while self._idle and (self._idle[0].idle_since < stale or not self._idle[0].usable()):
            self._idle.pop(0).close()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(self._max_body),
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        return connection

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
