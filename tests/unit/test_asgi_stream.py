"""How the ASGI app sends a streamed body (downloads): it stops once ``receive`` says the client
has gone, and never spins on a ``receive`` that cannot say so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pytusd.asgi import _send_response
from pytusd.messages import Response


class Body:
    """An endless stream of chunks that counts how many were read."""

    def __init__(self, limit: int = 1000) -> None:
        self.read = 0
        self.limit = limit
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self.read >= self.limit:
            raise StopAsyncIteration
        self.read += 1
        await asyncio.sleep(0)
        return b"x" * 10

    async def aclose(self) -> None:
        self.closed = True


def _run(body: Body, receive: Any, *, after: int | None = None) -> list[dict[str, Any]]:
    """Send ``body``; with ``after``, the client goes once that many chunks were sent."""
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if after is not None and sum(1 for m in sent if m.get("more_body")) >= after:
            gone.set()

    async def main() -> None:
        await asyncio.wait_for(_send_response(send, Response(200, [], body), head=False, receive=receive(gone)), 5)

    asyncio.run(main())
    return sent


def _asgi_receive(gone: asyncio.Event, *body: bytes) -> Any:
    """As servers do: the request body (empty unless given), then http.disconnect once the
    client has gone."""
    pieces = list(body or [b""])
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive


def test_sending_stops_once_the_client_has_gone() -> None:
    body = Body()
    sent = _run(body, _asgi_receive, after=3)
    chunks = [m for m in sent if m.get("more_body")]
    assert len(chunks) == 3
    assert body.read <= 4  # at most the chunk being read when the client went
    assert body.closed and sent[-1] == {"type": "http.response.body", "body": b""}


def test_a_client_that_stays_gets_everything() -> None:
    body = Body(limit=50)
    sent = _run(body, _asgi_receive)
    assert sum(1 for m in sent if m.get("more_body")) == 50 and body.closed


def test_a_receive_that_never_waits_is_not_watched_and_not_spun_on() -> None:
    calls = 0

    def eager(gone: asyncio.Event) -> Any:
        async def receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            return {"type": "http.request", "body": b"", "more_body": False}

        return receive

    body = Body(limit=200)
    sent = _run(body, eager)
    assert sum(1 for m in sent if m.get("more_body")) == 200
    assert calls == 2


def test_an_unread_request_body_is_dropped_while_watching() -> None:
    def with_body(gone: asyncio.Event) -> Any:
        return _asgi_receive(gone, b"a", b"b", b"c")

    body = Body()
    _run(body, with_body, after=2)
    assert body.read <= 3
