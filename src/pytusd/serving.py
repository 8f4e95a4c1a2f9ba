"""pytusd's HTTP/1.1 protocol class for uvicorn: interim responses, request trailers, fewer copies.

ASGI cannot send a 1xx other than 100, nor read request trailers. uvicorn's protocol classes are
pluggable (``uvicorn.Config(http=...)``), so the standalone server uses this subclass of uvicorn's
httptools protocol, which offers two scope extensions the app uses when present:

- ``pytusd.interim``: ``{"send": async (status, headers) -> None}`` writes a 1xx response (104
  Upload Resumption Supported) before the final one; it never replaces the 100 Continue that
  uvicorn sends when the app first reads the body.
- ``pytusd.trailers``: ``{"get": () -> list[(name, value)]}`` returns the request's trailer fields
  once the body is complete. Stock uvicorn appends trailers to ``scope["headers"]``; here they are
  kept apart, so a trailer can never pose as a header.

It also hands each received chunk to the app without the two copies (``bytearray +=`` then
``bytes()``) that stock uvicorn makes per chunk.

Mounted in another ASGI server, the app sees neither extension and degrades: no 104 responses and
no ``checksum-trailer`` in ``Tus-Extension``.
"""

from __future__ import annotations

import http
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pytusd.asgi import INTERIM_EXTENSION, TRAILERS_EXTENSION

_PHRASES = {104: "Upload Resumption Supported", 460: "Checksum Mismatch"}
for _code, _phrase in _PHRASES.items():
    # uvicorn derives reason phrases from http.HTTPStatus, which lacks these two.
    httptools_impl.STATUS_LINE[_code] = f"HTTP/1.1 {_code} {_phrase}\r\n".encode()

#: Bytes buffered for one request before the socket stops being read (backpressure).
BODY_HIGH_WATER = max(HIGH_WATER_LIMIT, 256 * 1024)
#: Request line plus header fields (and, separately, trailer fields) larger than this get a 431:
#: httptools itself has no limit, and headers are held in memory whole.
MAX_HEADER_BYTES = 64 * 1024


class _HeadersTooLarge(Exception):
    pass


class _Chunks:
    """Stands in for uvicorn's per-request ``bytearray`` body buffer.

    ``cycle.receive()`` calls ``bytes(buffer)``: with one chunk buffered, that returns the chunk
    itself, with no copy; several are joined once.
    """

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def append(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)


def _status_line(status: int) -> bytes:
    phrase = _PHRASES.get(status)
    if phrase is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


class PytusdHttpProtocol(HttpToolsProtocol):
    _header_bytes = 0
    _too_large = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._in_trailers = False
        trailers: list[tuple[bytes, bytes]] = []
        self._trailers = trailers
        scope: Any = self.scope
        scope["extensions"] = {
            INTERIM_EXTENSION: {"send": self._interim_sender(scope)},
            TRAILERS_EXTENSION: {"get": lambda: list(trailers)},
        }

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._too_large = True
            raise _HeadersTooLarge  # httptools stops parsing; uvicorn then calls send_400_response

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        body = b"request header fields too large\n"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if self._in_trailers:
            self._trailers.append((name.lower(), value))
        else:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_trailers = True
        self._header_bytes = 0  # trailers get a budget of their own

    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle  # its ``body`` becomes a _Chunks, which uvicorn's types do not know
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        buffer = cycle.body
        if type(buffer) is not _Chunks:
            fresh = _Chunks()
            if buffer:
                fresh.append(bytes(buffer))
            cycle.body = fresh
            buffer = fresh
        buffer.append(body)
        if buffer.size > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    def _interim_sender(self, scope: object) -> Callable[[int, list[tuple[bytes, bytes]]], Awaitable[None]]:
        async def send_interim(status: int, headers: list[tuple[bytes, bytes]]) -> None:
            if not 100 <= status <= 199 or status == 101:
                raise ValueError("interim responses are 1xx other than 101")
            cycle = self.cycle
            # Only while this request's final response has not started; never to HTTP/1.0 (RFC 9110).
            if cycle is None or cycle.scope is not scope or cycle.response_started or cycle.disconnected:
                return
            if cycle.scope.get("http_version") == "1.0":
                return
            if self.transport.is_closing():
                return
            lines = [_status_line(status)]
            for name, value in headers:
                if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
                    raise ValueError("invalid header in interim response")
                lines += [name, b": ", value, b"\r\n"]
            lines.append(b"\r\n")
            self.transport.write(b"".join(lines))

        return send_interim
