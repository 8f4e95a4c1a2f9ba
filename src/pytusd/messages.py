"""The request and response the handler works with, independent of any web server.

The ASGI app (or any other front end) builds a :class:`Request` and writes the :class:`Response`;
the handler never sees the transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

Headers = list[tuple[str, str]]


class Body(Protocol):
    """A request body as a stream of chunks that its consumer can be asked to end early."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def stop(self, reason: str) -> None:
        """End the stream at the next chunk boundary (or at once if it is waiting)."""

    @property
    def stopped(self) -> str | None:
        """Why the stream was stopped early, or None."""

    @property
    def disconnected(self) -> bool:
        """The client went away before the body was complete."""

    @property
    def complete(self) -> bool:
        """Every byte of the body was received."""

    @property
    def can_read_trailers(self) -> bool:
        """The web server passes request trailers on (pytusd's own serving layer does)."""

    def trailers(self) -> Mapping[str, str] | None:
        """Request trailers, once the body is complete; None if the server cannot read them."""

    @property
    def can_write_into(self) -> bool:
        """The web server can move the body into a file descriptor itself (pytusd's can, on Linux)."""

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        """Write the rest of the body (at most ``limit`` bytes) at ``fd``'s position, calling
        ``moved(n)`` as bytes land; only when :attr:`can_write_into`. Fewer than ``limit`` bytes
        means the body ended (see :attr:`complete` and :attr:`disconnected`)."""

    def quiet_for(self) -> float:
        """Seconds its reader has been waiting for bytes without any arriving; 0 while it is not
        waiting (it has not begun reading, or is busy storing what it received).

        Decides whether a request holding an upload is still making progress (:mod:`pytusd.handover`)
        and whether its client went silent (:mod:`pytusd.idle`).
        """


class EmptyBody:
    """The body of a request that has none."""

    stopped: str | None = None
    disconnected = False
    complete = True
    can_read_trailers = False
    can_write_into = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._nothing()

    async def _nothing(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    def stop(self, reason: str) -> None:
        return None

    def trailers(self) -> Mapping[str, str] | None:
        return None

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        return 0

    def quiet_for(self) -> float:
        return 0.0


InterimSender = Callable[[int, Headers], Awaitable[None]]


@dataclass(slots=True)
class Request:
    method: str
    #: Percent-decoded path, including the base path.
    path: str
    #: Lower-case names; repeated headers joined with ", " (so a repeated number fails to parse).
    headers: Mapping[str, str]
    body: Body = field(default_factory=EmptyBody)
    scheme: str = "http"
    #: host[:port] the server listens on, used when the request has no Host header.
    server_host: str | None = None
    client_addr: str = ""
    query: str = ""
    #: Sends a 1xx interim response; None where the web server cannot.
    send_interim: InterimSender | None = None
    #: Every header as received, for hooks (tusd hooks see them all); decoded only when needed.
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes | AsyncIterator[bytes] = b""
