"""The network timeout of a connection while no request of it is in the app (tusd's ReadHeaderTimeout).

uvicorn closes a keep-alive connection that stays idle after a response, but sets no limit on a
connection that never sends a request, nor on a request head that trickles in (slowloris), nor on
the rest of a body the app answered without reading. Here one timer per connection, armed when
it opens, when a request head begins and when a response ends, and stopped once a head is
complete, closes the connection ``network_timeout`` seconds later unless a request is in the app
then (bodies the app reads are its business: pytusd.idle). A head cut short gets a 408 first.

Writing has the same bound: a client that reads nothing of a response (a download) for that long,
while its connection's send buffer is full, has its connection aborted; uvicorn would otherwise
wait for it for ever. The timer runs only while writing is paused, never per write.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from pytusd.serving.uvicorn_internals import HttpToolsBase

_TIMEOUT_BODY = b"request head not received in time\n"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class DeadlineHttpProtocol(HttpToolsBase):
    """uvicorn's protocol with a deadline on a connection's reads outside requests; see the module."""

    #: None: no deadline (the protocol class used outside the ``pytusd`` command)
    network_timeout: float | None = None
    _deadline: asyncio.TimerHandle | None = None
    #: requests whose headers are in and whose response has not ended
    _in_app = 0
    _in_head = False
    _write_stall: asyncio.TimerHandle | None = None
    #: bytes waiting to be sent when the write timer was armed: less at its end is progress
    _unsent = 0

    def __init__(self, *, network_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network_timeout = network_timeout

    def _arm(self) -> None:
        if self.network_timeout is None:
            return
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.network_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._in_app or self.transport.is_closing():
            return  # the end of that response arms it again
        if self._in_head:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._writable()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.network_timeout is not None and self._write_stall is None:
            self._watch_writes()

    def resume_writing(self) -> None:
        self._writable()
        super().resume_writing()

    def _watch_writes(self) -> None:
        assert self.network_timeout is not None
        self._unsent = self.transport.get_write_buffer_size()
        self._write_stall = self.loop.call_later(self.network_timeout, self._write_expired)

    def _writable(self) -> None:
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def _write_expired(self) -> None:
        self._write_stall = None
        if self.transport.get_write_buffer_size() < self._unsent:
            self._watch_writes()  # a slow reader, but a reader
        else:
            # A reset: close() would wait to send what the client does not read, and the kernel
            # would go on trying to send it for minutes after.
            sock = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_head = False
        self._in_app += 1
        self._disarm()

    def on_response_complete(self) -> None:
        self._in_app = max(0, self._in_app - 1)
        super().on_response_complete()
        # Idle after it, or still receiving a body nobody reads: either may last this long.
        if not self.transport.is_closing():
            self._arm()
