"""pytusd's HTTP/1.1 protocol for uvicorn: the scope extensions, header limits, read pacing, splice.

What it adds to uvicorn's httptools protocol is pytusd's own: the ``pytusd.interim``,
``pytusd.trailers`` and ``pytusd.splice`` extensions (see ``pytusd.serving``), a 431 for
oversized headers, the receive low-water mark that batches wake-ups, and the count of bodies
arriving, kept in the server's :class:`~pytusd.serving.budget.ReadBudget`. Whatever it needs of
uvicorn's internals goes through :class:`~pytusd.serving.uvicorn_internals.HttpToolsBase`.
"""

from __future__ import annotations

import asyncio
import http
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from pytusd.asgi import INTERIM_EXTENSION, SPLICE_EXTENSION, TRAILERS_EXTENSION
from pytusd.fdio import write_all
from pytusd.metrics.recorder import NO_METRICS, Recorder
from pytusd.serving.budget import ReadBudget
from pytusd.serving.deadline import DeadlineHttpProtocol
from pytusd.serving.splice import CAN_SPLICE, Outcome, SplicePipe
from pytusd.serving.uvicorn_internals import add_reason_phrases

_PHRASES = {104: "Upload Resumption Supported", 460: "Checksum Mismatch"}
add_reason_phrases(_PHRASES)  # uvicorn derives reason phrases from http.HTTPStatus, which lacks these two

#: Request line plus header fields (and, separately, trailer fields) larger than this get a 431:
#: httptools itself has no limit, and headers are held in memory whole.
MAX_HEADER_BYTES = 64 * 1024
#: Seconds without a read after which the low-water mark drops back to one byte.
LOW_WATER_STALL = 0.05
#: A read at least this large means the client sends faster than we read: batch the wake-ups.
FAST_READ = 64 * 1024
#: A body with less than this left after the headers' read is read as usual: splicing it would
#: cost more system calls (a pipe, a second descriptor) than the two copies it saves.
SPLICE_MIN = 64 * 1024


class _Into:
    """One body moved into files by ``pytusd.splice``, over one call or (with limits) several."""

    __slots__ = ("gone", "keep_alive", "more", "pending", "pipe", "read")

    def __init__(self, pending: list[bytes], more: bool, gone: bool) -> None:
        #: bytes parsed already (with the headers, or read past a limit), written first
        self.pending = [chunk for chunk in pending if chunk]
        self.more = more
        self.gone = gone
        self.pipe: SplicePipe | None = None
        #: the rest is read by the parser instead (too short to splice, or it cannot be)
        self.read = False
        #: the connection's keep-alive while the body is only partly moved (None: not held)
        self.keep_alive: bool | None = None

    def write_pending(self, fd: int, room: int, moved: Callable[[int], None] | None) -> int:
        """Write parsed bytes into ``fd``, at most ``room`` of them (-1: all)."""
        written = 0
        while self.pending and (room < 0 or written < room):
            chunk = self.pending[0]
            if 0 <= room - written < len(chunk):
                take = room - written
                self.pending[0] = chunk[take:]
                chunk = chunk[:take]
            else:
                self.pending.pop(0)
            written += write_all(fd, chunk)
            if moved is not None:
                moved(len(chunk))
        return written

    def close_pipe(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None


class _HeadersTooLarge(Exception):
    """The request line and headers (or the trailers) passed MAX_HEADER_BYTES: answered 431."""


def _status_line(status: int) -> bytes:
    phrase = _PHRASES.get(status)
    if phrase is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


class PytusdHttpProtocol(DeadlineHttpProtocol):
    """Give it to uvicorn as ``http=functools.partial(PytusdHttpProtocol, budget=ReadBudget())``.

    Given as the bare class, each connection gets a budget of its own (it reads as if it were the
    only upload): reads are then not shared out among the uploads of the server.
    """

    _header_bytes = 0
    _too_large = False
    #: body bytes of the current request still to come (0: none, or not known: chunked)
    _body_left = 0
    _content_length = -1
    #: the socket's SO_RCVLOWAT as last set
    _low_water = 1
    #: counted in budget.receiving
    _counted = False
    #: where this connection is counted (the app's metrics)
    _metrics: Recorder = NO_METRICS

    #: the current body's moves into files (pytusd.splice), once the first one began
    _into: _Into | None = None

    _reads = 0
    _reads_at_check = 0
    _stall_check: asyncio.TimerHandle | None = None

    def __init__(self, *, budget: ReadBudget | None = None, **uvicorn_kwargs: Any) -> None:
        super().__init__(**uvicorn_kwargs)
        self.budget = ReadBudget() if budget is None else budget

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._pace(len(data))

    def _pace(self, nbytes: int) -> None:
        """After a read of ``nbytes``: how many bytes should the next wake-up wait for?"""
        # Every wake-up of an idle process costs a context switch (far more in a VM, where the
        # vCPU halts): when a body streams in faster than we read it, let the kernel gather
        # half a read's worth of bytes per wake-up. Never more than the body still owes, so its end
        # (and the response) is never held back; slow senders keep one wake-up per read; and a
        # sender that stalls has what it sent read (and stored) within LOW_WATER_STALL seconds.
        self._reads += 1
        left = self._body_left
        want = min(self.budget.read_size() // 2, left) if left > 0 and nbytes >= FAST_READ else 1
        if want != self._low_water:
            self._set_low_water(want)
            if want > 1 and self._stall_check is None:
                self._watch_for_stall()

    def _watch_for_stall(self) -> None:
        self._reads_at_check = self._reads
        self._stall_check = self.loop.call_later(LOW_WATER_STALL, self._check_stall)

    def _check_stall(self) -> None:
        self._stall_check = None
        if self._low_water <= 1 or self.transport.is_closing():
            return
        if self._reads == self._reads_at_check:
            self._set_low_water(1)  # the kernel then wakes us for what it holds
        else:
            self._watch_for_stall()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # The app's metrics count connections (tusd_connections_open); another app has none.
        self._metrics = getattr(self.app, "metrics", NO_METRICS)
        self._metrics.connection_opened()
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._metrics.connection_closed()
        self._end_into()
        self._count_body(False)
        if self._stall_check is not None:
            self._stall_check.cancel()
            self._stall_check = None
        super().connection_lost(exc)

    def _set_low_water(self, size: int) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
        except (OSError, ValueError):  # ValueError: uvloop's socket of a closed transport (no descriptor)
            return
        self._low_water = size

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._end_into()
        self._content_length = -1
        self._body_left = 0
        self._header_bytes = 0
        self._in_trailers = False
        trailers: list[tuple[bytes, bytes]] = []
        self._trailers = trailers
        scope = self._request_scope()
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
            if len(name) == 14 and name.lower() == b"content-length" and value.strip().isdigit():
                self._content_length = int(value)
            super().on_header(name, value)

    def _count_body(self, receiving: bool) -> None:
        """Keep the server's count of bodies being received (it sizes the reads)."""
        if receiving != self._counted:
            self._counted = receiving
            self.budget.receiving += 1 if receiving else -1

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # httptools itself refuses a Content-Length next to chunked coding or a second, different one.
        self._body_left = max(self._content_length, 0)
        self._count_body(self._body_left > 0)
        self._in_trailers = True
        self._header_bytes = 0  # trailers get a budget of their own
        if self._body_left > 0 and CAN_SPLICE and self.transport.get_extra_info("ssl_object") is None:
            request = self._request_cycle()

            async def splice_into(
                fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None
            ) -> tuple[int, bool]:
                return await self._splice_into(request, fd, limit, moved)

            self._request_scope()["extensions"][SPLICE_EXTENSION] = {"into": splice_into}

    async def _splice_into(
        self, request: object, fd: int, limit: int | None, moved: Callable[[int], None] | None
    ) -> tuple[int, bool]:
        """The ``pytusd.splice`` extension: (at most ``limit`` bytes of) the rest of this request's
        body into ``fd``; ``moved(n)`` once each ``n`` bytes are in the file.

        Bytes that arrived with the headers are written first; the rest moves socket -> pipe ->
        file (``pytusd.serving.splice``), never entering the process. httptools never sees the
        spliced bytes, so a fresh parser takes over for the next request; a body cut short closes
        the connection. With a limit, the body may be moved into several files by several calls:
        the pipe stays open (and the socket unread) in between, and an answer given before the
        body's end closes the connection.
        """
        state = self._into
        if state is None:
            chunks, more_body, disconnected = self._take_buffered_body(request)
            state = self._into = _Into(chunks, more_body, disconnected)
        room = -1 if limit is None else limit
        written = state.write_pending(fd, room, moved)
        if state.pending or (room >= 0 and written >= room):
            return written, False  # the limit: more to come
        if not state.more or state.gone:
            # Parsed whole, or the client is gone: what was buffered is all there is. (A pipelined
            # request can follow only a parsed end, so ``self._body_left`` is this body's.)
            return written, not state.more
        left = -1 if room < 0 else room - written
        if not state.read and state.pipe is None:
            pipe = None
            if self._body_left >= SPLICE_MIN:
                pipe = SplicePipe.open(self.transport.get_extra_info("socket").fileno(), self.budget.read_size())
            if pipe is None:  # too short to repay a pipe, or out of descriptors: reading needs none
                state.read = True
            else:
                state.pipe = pipe
                self._pause_reading()
        if state.read:
            return await self._read_into(request, state, fd, written, left, moved)
        return await self._move_into(request, state, fd, written, left, moved)

    async def _move_into(
        self, request: object, state: _Into, fd: int, written: int, left: int, moved: Callable[[int], None] | None
    ) -> tuple[int, bool]:
        pipe = state.pipe
        assert pipe is not None
        want = self._body_left if left < 0 else min(left, self._body_left)

        def spliced(count: int) -> None:
            self._spliced(count)
            if moved is not None:
                moved(count)

        outcome = Outcome.CUT_SHORT  # unless the splice says otherwise (it may be cancelled)
        try:
            count, outcome = await pipe.move(self.loop, fd, want, spliced, share=moved is not None)
            written += count
        finally:
            done = outcome is Outcome.COMPLETE and self._body_left <= 0
            if outcome is Outcome.COMPLETE and not done:
                # Stopped at the limit: the next call goes on. Until the body is moved whole, an
                # answer closes the connection (httptools would take the rest for a request).
                if state.keep_alive is None:
                    state.keep_alive = self._hold_keep_alive(request)
            else:
                state.close_pipe()
                self._set_low_water(1)
                if done:
                    state.more = False
                    self._body_bypassed_parser(request)
                    if state.keep_alive is not None:
                        self._restore_keep_alive(request, state.keep_alive)
                    self._count_body(False)
                    self._resume_reading()
                elif outcome is Outcome.UNSUPPORTED:
                    state.read = True
                    self._resume_reading()
                else:
                    state.gone = True
                    self._lost_count_of_body(request)
        if outcome is Outcome.UNSUPPORTED:
            return await self._read_into(request, state, fd, written, left, moved)
        return written, done

    async def _read_into(
        self, request: object, state: _Into, fd: int, written: int, left: int, moved: Callable[[int], None] | None
    ) -> tuple[int, bool]:
        """The rest read by the parser as usual, into ``fd``; past the limit, kept for the next call."""
        while left != 0:
            data, more, gone = await self._receive_chunk(request)
            if gone:
                state.gone = True
                return written, False
            if 0 <= left < len(data):
                state.pending.append(data[left:])
                data = data[:left]
            written += write_all(fd, data)
            if data and moved is not None:
                moved(len(data))
            if left > 0:
                left -= len(data)
            if not more:
                state.more = False
                return written, not state.pending
        return written, False

    def on_response_complete(self) -> None:
        self._end_into()
        super().on_response_complete()

    def _end_into(self) -> None:
        """A request is over: a pipe still open (its body was not moved whole) closes."""
        state, self._into = self._into, None
        if state is not None:
            state.close_pipe()

    def _spliced(self, moved: int) -> None:
        """``moved`` body bytes went past the parser into the file."""
        self._body_left -= moved
        self._pace(moved)

    def on_body(self, body: bytes) -> None:
        self._body_left -= len(body)
        if self._counted and self._body_left <= 0:
            self._count_body(False)
        super().on_body(body)

    def _interim_sender(self, scope: object) -> Callable[[int, list[tuple[bytes, bytes]]], Awaitable[None]]:
        async def send_interim(status: int, headers: list[tuple[bytes, bytes]]) -> None:
            if not 100 <= status <= 199 or status == 101:
                raise ValueError("interim responses are 1xx other than 101")
            if not self._may_send_interim(scope):
                return
            lines = [_status_line(status)]
            for name, value in headers:
                if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
                    raise ValueError("invalid header in interim response")
                lines += [name, b": ", value, b"\r\n"]
            lines.append(b"\r\n")
            self.transport.write(b"".join(lines))

        return send_interim
