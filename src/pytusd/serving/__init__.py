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
- ``pytusd.splice``: ``{"into": async (fd) -> (bytes_moved, complete)}``, offered for a body with
  a Content-Length on a plain socket: writes the rest of the body at ``fd``'s file position, moving
  it from the socket through a pipe with ``splice(2)``, so the bytes never enter the process.
  ``complete`` is False if the client went away first. Cancelled, it stops between two moves and
  the file position tells how far it got; the connection then closes after the response.

It also hands each received chunk to the app without the two copies (``bytearray +=`` then
``bytes()``) that stock uvicorn makes per chunk.

Mounted in another ASGI server, the app sees neither extension and degrades: no 104 responses and
no ``checksum-trailer`` in ``Tus-Extension``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import http
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from pytusd.asgi import INTERIM_EXTENSION, SPLICE_EXTENSION, TRAILERS_EXTENSION
from pytusd.fdio import write_all

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent

_PHRASES = {104: "Upload Resumption Supported", 460: "Checksum Mismatch"}
for _code, _phrase in _PHRASES.items():
    # uvicorn derives reason phrases from http.HTTPStatus, which lacks these two.
    httptools_impl.STATUS_LINE[_code] = f"HTTP/1.1 {_code} {_phrase}\r\n".encode()

#: Bytes buffered for one request before the socket stops being read (backpressure).
BODY_HIGH_WATER = max(HIGH_WATER_LIMIT, 256 * 1024)
#: Request line plus header fields (and, separately, trailer fields) larger than this get a 431:
#: httptools itself has no limit, and headers are held in memory whole.
MAX_HEADER_BYTES = 64 * 1024


#: Most bytes read from a socket at once: one upload streaming alone gets reads this large.
READ_BUFFER = 1024 * 1024
#: Reads of all bodies arriving at once share this budget (each read is held as a chunk until
#: written), so memory does not grow with concurrent uploads: 32 at once read 128 KiB each.
READ_BUDGET = 4 * 1024 * 1024
#: ... but no read is smaller than this.
MIN_READ = 64 * 1024
#: Seconds without a read after which the low-water mark drops back to one byte.
LOW_WATER_STALL = 0.05
#: A read at least this large means the client sends faster than we read: batch the wake-ups.
FAST_READ = 64 * 1024
#: A body with less than this left after the headers' read is read as usual: splicing it would
#: cost more system calls (a pipe, a second descriptor) than the two copies it saves.
SPLICE_MIN = 64 * 1024
#: splice(2) exists (Linux); without it bodies are always read by the event loop.
CAN_SPLICE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")


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

    def pop_oldest(self) -> bytes:
        chunk = self.chunks.pop(0)
        self.size -= len(chunk)
        return chunk

    def __bytes__(self) -> bytes:
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)


class _Cycle(RequestResponseCycle):
    """uvicorn's request cycle, handing over buffered body chunks one by one.

    uvicorn's ``receive`` joins everything buffered into one ``bytes`` (a copy of each chunk, and
    several reads often arrive while the app writes the previous chunk). Returning the oldest
    chunk while more are buffered costs one more call instead of the copy. Otherwise this is
    uvicorn's ``receive`` (0.5x), which the version bound in pyproject.toml keeps in step.
    """

    async def receive(self) -> ASGIReceiveEvent:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False

        if not self.disconnected and not self.response_complete:
            if _buffered_chunks(self.body) > 1:
                return self._oldest_chunk()
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()

        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if _buffered_chunks(self.body) > 1:
            self.message_event.set()  # more is buffered: the next receive must not wait
            return self._oldest_chunk()
        message: ASGIReceiveEvent = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body = bytearray()
        return message

    def _oldest_chunk(self) -> ASGIReceiveEvent:
        body: Any = self.body
        return {"type": "http.request", "body": body.pop_oldest(), "more_body": True}


def _buffered_chunks(body: object) -> int:
    return len(body.chunks) if type(body) is _Chunks else 0


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
    #: body bytes of the current request still to come (0: none, or not known: chunked)
    _body_left = 0
    _content_length = -1
    #: the socket's SO_RCVLOWAT as last set
    _low_water = 1
    #: counted in _receiving_bodies
    _counted = False

    _reads = 0
    _reads_at_check = 0
    _stall_check: asyncio.TimerHandle | None = None

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
        want = min(read_size() // 2, left) if left > 0 and nbytes >= FAST_READ else 1
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

    def connection_lost(self, exc: Exception | None) -> None:
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
        except OSError:
            return
        self._low_water = size

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._content_length = -1
        self._body_left = 0
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
            if len(name) == 14 and name.lower() == b"content-length" and value.strip().isdigit():
                self._content_length = int(value)
            super().on_header(name, value)

    def _count_body(self, receiving: bool) -> None:
        """Keep the process-wide count of bodies being received (it sizes the reads)."""
        global _receiving_bodies
        if receiving != self._counted:
            self._counted = receiving
            _receiving_bodies += 1 if receiving else -1

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _Cycle  # same object, our receive (uvicorn builds it inline)
        # httptools itself refuses a Content-Length next to chunked coding or a second, different one.
        self._body_left = max(self._content_length, 0)
        self._count_body(self._body_left > 0)
        self._in_trailers = True
        self._header_bytes = 0  # trailers get a budget of their own
        if self._body_left > 0 and CAN_SPLICE and self.transport.get_extra_info("ssl_object") is None:
            cycle = self.cycle

            async def splice_into(fd: int) -> tuple[int, bool]:
                return await self._splice_into(cycle, fd)

            self.scope["extensions"][SPLICE_EXTENSION] = {"into": splice_into}

    async def _splice_into(self, cycle: RequestResponseCycle, fd: int) -> tuple[int, bool]:
        """The ``pytusd.splice`` extension: the rest of this request's body into ``fd``.

        Bytes that arrived with the headers are written first. The rest never enters the
        process: splice(2) moves it from the socket into a pipe (on loopback the pipe takes
        references to the socket's pages) and from the pipe into the file (one copy, into the
        page cache). Reading the same bytes costs three copies: into the read buffer, into a
        ``bytes`` for the chunk, into the page cache. httptools never sees the spliced bytes, so
        a fresh parser takes over for the next request; a body cut short closes the connection.
        """
        if cycle.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        buffered: Any = cycle.body
        cycle.body = bytearray()
        written = 0
        for chunk in buffered.chunks if type(buffered) is _Chunks else [bytes(buffered)]:
            written += write_all(fd, chunk)
        if not cycle.more_body or cycle.disconnected:
            # Parsed whole, or the client is gone: what was buffered is all there is. (A pipelined
            # request can follow only a parsed end, so ``self._body_left`` is this body's.)
            return written, not cycle.more_body
        if self._body_left < SPLICE_MIN:
            return await self._receive_into(cycle, fd, written)
        try:
            # A second descriptor for the same socket: uvloop refuses readers on a transport's own.
            watched = os.dup(self.transport.get_extra_info("socket").fileno())
        except OSError:  # out of descriptors: reading needs none
            return await self._receive_into(cycle, fd, written)
        try:
            pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            os.close(watched)
            return await self._receive_into(cycle, fd, written)
        self.flow.pause_reading()
        complete = False
        spliced = 0
        unsupported = False
        try:
            pipe_size = _grow_pipe(pipe_in, read_size())
            while True:
                left = self._body_left
                if left <= 0:
                    complete = True
                    break
                try:
                    moved = os.splice(watched, pipe_in, min(left, pipe_size), flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    await self._readable(watched)
                    continue
                except OSError as exc:
                    # A socket the kernel cannot splice from (nothing taken yet: read it instead);
                    # otherwise reset by the client, as good as gone.
                    unsupported = spliced == 0 and exc.errno in _UNSUPPORTED
                    break
                if moved == 0:
                    break  # the client closed its side before the body ended
                spliced += moved
                self._body_left -= moved
                written += _drain_pipe(pipe_out, fd, moved)
                self._pace(moved)
        finally:
            os.close(pipe_out)
            os.close(pipe_in)
            os.close(watched)
            self._set_low_water(1)
            if complete:
                self.parser = httptools.HttpRequestParser(self)
                with contextlib.suppress(AttributeError):  # as uvicorn: answer before a pipelined request
                    self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
                cycle.more_body = False
                self._count_body(False)
                self.flow.resume_reading()
            elif unsupported:
                self.flow.resume_reading()
            else:
                cycle.keep_alive = False  # httptools lost count of this body: do not parse what follows
        if unsupported:
            return await self._receive_into(cycle, fd, written)
        return written, complete

    @staticmethod
    async def _receive_into(cycle: RequestResponseCycle, fd: int, written: int) -> tuple[int, bool]:
        """Read the rest of the body: a rest too short to repay a pipe, or one that cannot be spliced."""
        while True:
            message: Any = await cycle.receive()  # http.request or http.disconnect
            if message["type"] == "http.disconnect":
                return written, False
            written += write_all(fd, message["body"])
            if not message["more_body"]:
                return written, True

    async def _readable(self, fd: int) -> None:
        waiter = self.loop.create_future()
        self.loop.add_reader(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self.loop.remove_reader(fd)  # before the descriptor closes: epoll keys on it

    def on_body(self, body: bytes) -> None:
        self._body_left -= len(body)
        if self._body_left <= 0 and self._counted:
            self._count_body(False)
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


class BufferedHttpProtocol(asyncio.BufferedProtocol):
    """:class:`PytusdHttpProtocol` behind uvloop's buffered reads: one copy less per received byte.

    uvloop copies every read into a fresh ``bytes`` for ``data_received``, unless the protocol is
    a ``BufferedProtocol`` and *not* an ``asyncio.Protocol`` (uvicorn's classes are the latter).
    So this wrapper lends uvloop one buffer (shared by all connections of the process: a buffer
    per connection would cost its size per idle keep-alive connection) and has httptools parse
    it in place.
    Nothing keeps a reference to the buffer after parsing: httptools hands out copies (header
    values, body chunks), and uvicorn handles parser errors and upgrades inside the call.

    Give it to uvicorn as the protocol class: uvicorn calls it with its keyword arguments.
    """

    __slots__ = ("inner",)

    def __init__(self, **uvicorn_kwargs: Any) -> None:
        self.inner = PytusdHttpProtocol(**uvicorn_kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)  # type: ignore[arg-type]  # uvicorn wants a Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def eof_received(self) -> None:
        self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER[: read_size()]

    def buffer_updated(self, nbytes: int) -> None:
        self.inner.data_received(_READ_BUFFER[:nbytes])  # type: ignore[arg-type]  # any buffer will do


_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _grow_pipe(fd: int, size: int) -> int:
    """Make the pipe hold ``size`` bytes if the system lets us; return what it holds."""
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size or the user's pipe quota
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


#: errno of splice(2) for a descriptor that does not support it
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _drain_pipe(pipe_out: int, fd: int, size: int) -> int:
    """Move ``size`` bytes that sit in the pipe into ``fd`` (at its position).

    A file the kernel cannot splice into gets them by read and write instead: they have left the
    socket already, so failing here would lose them.
    """
    done = 0
    while done < size:
        try:
            done += os.splice(pipe_out, fd, size - done, flags=getattr(os, "SPLICE_F_MOVE", 0))
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            done += write_all(fd, os.read(pipe_out, size - done))
    return size


#: Bodies of this process that are arriving now (their requests have more bytes to come).
_receiving_bodies = 0


def read_size() -> int:
    """How much one read may take now: READ_BUFFER, or a share of READ_BUDGET when many arrive."""
    return max(MIN_READ, min(READ_BUFFER, READ_BUDGET // max(1, _receiving_bodies)))


#: One read buffer for every connection of the process: uvloop fills it and calls buffer_updated
#: synchronously, one connection at a time, and parsing copies out all it keeps.
_READ_BUFFER = memoryview(bytearray(READ_BUFFER))
