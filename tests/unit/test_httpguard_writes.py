"""A response's head goes out with its body in one send (core/httpguard.py ``_HeadWithBody``): uvicorn
writes the status line and headers on their own, then the body; a plain response is now one write, a
stream's head waits at most one turn of the loop, and nothing is lost or reordered on close."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from agentic_backend.core.httpguard import _HeadWithBody


class Recording:
    """A transport that records what was sent, as the sends a socket would make."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.sends.append(data)

    def writelines(self, chunks: Any) -> None:
        assert not self.closed
        self.sends.append(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def coalescing() -> tuple[_HeadWithBody, Recording]:
    sent = Recording()
    return _HeadWithBody(cast(asyncio.Transport, sent), asyncio.get_running_loop()), sent


async def test_a_plain_response_is_one_send() -> None:
    transport, sent = coalescing()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert sent.sends == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)  # the turn's flush finds nothing left
    assert len(sent.sends) == 1


async def test_a_streams_head_goes_out_within_a_turn_and_its_chunks_in_order() -> None:
    transport, sent = coalescing()
    transport.write(b"HEAD")
    assert sent.sends == []
    await asyncio.sleep(0)  # the first chunk has not come: the head does not wait for it
    assert sent.sends == [b"HEAD"]
    transport.write(b"chunk 1")
    transport.write(b"chunk 2")
    assert sent.sends == [b"HEAD", b"chunk 1", b"chunk 2"]


async def test_closing_sends_a_held_head_first() -> None:
    transport, sent = coalescing()
    transport.write(b"HEAD")
    transport.close()
    assert sent.sends == [b"HEAD"]
    assert sent.closed
    await asyncio.sleep(0)
    assert sent.sends == [b"HEAD"]


async def test_a_head_held_for_a_connection_that_closed_meanwhile_is_dropped() -> None:
    transport, sent = coalescing()
    transport.write(b"HEAD")
    sent.closed = True  # the client went away
    await asyncio.sleep(0)
    assert sent.sends == []
