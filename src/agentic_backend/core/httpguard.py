"""HTTP/1.1 with bounds on what a client can hold: uvicorn's httptools protocol, guarded.

uvicorn's httptools protocol (the fast parser ``uvicorn[standard]`` picks) has no limit on a request's
head and no timeout before a request is complete: one client sending an endless header line grew a worker
by 600 MB and stalled every other client for seconds, and connections sending a byte at a time were never
closed. h11 bounds the head (16 KiB) but not the time, and parses in Python. This subclass keeps
httptools' parser and adds, per connection (settings in ``HttpLimits``, documented in the README):

- the head (request line and headers) at most ``max_head_bytes``, ``max_headers`` fields, a URL of at most
  ``max_url_bytes``: else 431 (or 414 for the URL), counted as the bytes arrive, before they are kept;
- the head complete within ``header_timeout`` seconds of its first byte (or of the connection's opening,
  for a connection that sends nothing): else 408 (or a plain close if nothing came);
- the body arriving at no less than ``body_min_rate`` bytes a second after a grace of ``body_timeout``
  seconds (Apache's mod_reqtimeout rule): else 408, or a close if the answer has begun. A body the
  application does not read yet (flow control) is never the client's fault.

It also sends a response's head with its body in one write, where uvicorn makes two (``_HeadWithBody``).

Refusals are answered as every error of the service is, ``{"error", "detail"}`` in JSON, with
``Connection: close``. Idle keep-alive connections are uvicorn's (``--timeout-keep-alive``), and the
number of requests a worker takes at once is uvicorn's ``--limit-concurrency`` (503 past it).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_LINGER_SECONDS = 1.0
_LINGER_BYTES = 256 * 1024
_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head_bytes: int = 32 * 1024
    max_headers: int = 100
    max_url_bytes: int = 8 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    body_min_rate: float = 500.0


@cache
def configured_limits() -> HttpLimits:
    """The limits of this process's settings (read once, in each worker, at its first connection)."""
    from agentic_backend.core.config import Settings

    settings = Settings()
    return HttpLimits(
        max_head_bytes=settings.http_max_head_bytes,
        max_headers=settings.http_max_headers,
        max_url_bytes=settings.http_max_url_bytes,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        body_min_rate=settings.http_body_min_bytes_per_second,
    )


class _Refused(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: HttpLimits | None = None  # None: configured_limits(); tests set their own on a subclass

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or configured_limits()
        self._in_head = True
        self._head_bytes = 0  # bytes received since the head began (an upper bound of its size)
        self._url_bytes = 0
        self._field_bytes = 0
        self._fields = 0
        self._timer: asyncio.TimerHandle | None = None
        self._body_deadline = 0.0
        self._refused = False
        self._dropped = 0

    # The connection and its bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))  # a TCP connection's: uvicorn's own cast
        self._arm(self._limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # a refusal was sent: what still comes is dropped (lingering close), up to a point
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES:
                self.transport.pause_reading()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            if self._timer is None:  # the first byte of a new request on a kept-alive connection
                self._arm(self._limits.header_timeout, self._head_timed_out)
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                self._refuse(exc.__context__)
                return
            self._invalid()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self._limits.max_head_bytes:
            self._refuse(self._head_too_large())

    def _invalid(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = self._field_bytes = self._fields = 0

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self._limits.max_url_bytes:
            raise _Refused(
                414,
                "UriTooLong",
                f"The request's URL is longer than {self._limits.max_url_bytes} bytes "
                "(AGENTIC_HTTP_MAX_URL_BYTES): send long input in a body.",
            )
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._field_bytes += len(name) + len(value) + 4
        if self._fields > self._limits.max_headers:
            raise _Refused(
                431,
                "HeaderFieldsTooLarge",
                f"The request has more than {self._limits.max_headers} header fields "
                "(AGENTIC_HTTP_MAX_HEADERS).",
            )
        if self._url_bytes + self._field_bytes > self._limits.max_head_bytes:
            raise self._head_too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        self._body_deadline = self.loop.time() + self._limits.body_timeout
        self._arm(self._limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = cast(asyncio.Transport, _HeadWithBody(self.transport, self.loop))

    def on_body(self, body: bytes) -> None:
        self._body_deadline += len(body) / self._limits.body_min_rate
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0  # the next request's head begins with its first byte
        super().on_message_complete()

    # Timeouts

    def _arm(self, delay: float, handler: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, handler)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:  # nothing came: an idle connection, closed without a word
            self.transport.close()
            return
        self._refuse(
            _Refused(
                408,
                "RequestTimeout",
                f"The request's head did not arrive within {self._limits.header_timeout:g} s "
                "(AGENTIC_HTTP_HEADER_TIMEOUT_SECONDS).",
            )
        )

    def _body_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused or now < self._body_deadline:
            # The application has not read what came (not the client's fault), or the client kept pace.
            later = max(self._body_deadline - now, 0.0) or self._limits.body_timeout
            self._arm(later, self._body_timed_out)
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        self._refuse(
            _Refused(
                408,
                "RequestTimeout",
                f"The request's body came slower than {self._limits.body_min_rate:g} bytes a second after "
                f"{self._limits.body_timeout:g} s (AGENTIC_HTTP_BODY_TIMEOUT_SECONDS, "
                "AGENTIC_HTTP_BODY_MIN_BYTES_PER_SECOND).",
            )
        )

    # Answers

    def _head_too_large(self) -> _Refused:
        return _Refused(
            431,
            "HeaderFieldsTooLarge",
            f"The request's head (request line and headers) is larger than {self._limits.max_head_bytes} "
            "bytes (AGENTIC_HTTP_MAX_HEAD_BYTES).",
        )

    def _refuse(self, refusal: _Refused) -> None:
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application, if running, stops reading this connection
        body = json.dumps({"error": refusal.error, "detail": refusal.detail}).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (refusal.status, _REASONS[refusal.status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        # A lingering close: closing a socket whose client is still sending makes the kernel reset the
        # connection, and the reset can destroy the answer before the client reads it. So the write side
        # is shut, what still comes is dropped (up to 256 KiB; then reading stops), and the socket is
        # closed when the client closes or after a second.
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
        self.logger.info(
            "refused a request from %s: %d %s", _peer(self.client), refusal.status, refusal.error
        )


class _HeadWithBody:
    """A response's transport as its cycle writes to it: the status line and headers go out with the
    body's first bytes, in one send.

    uvicorn writes the head on its own when the application starts the response, then the body: two sends,
    so two TCP segments, and the client woken twice, for every response. Here the head waits for the next
    write (a plain response: the application sends the body in the same step, back to back) or for the
    loop's next turn, whichever comes first (a stream's first chunk may come later; a HEAD answer has no
    body), so no head waits longer than one turn. Later writes go straight through."""

    __slots__ = ("_held", "_loop", "_transport", "_written")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._written = False

    def write(self, data: bytes) -> None:
        if not self._written:  # the head (or a 100 Continue): held for one turn at most
            self._written = True
            self._held = data
            self._loop.call_soon(self._flush)
            return
        held, self._held = self._held, None
        if held is not None:
            self._transport.writelines((held, data))
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"


PROTOCOL = f"{__name__}:{GuardedHttpToolsProtocol.__name__}"
