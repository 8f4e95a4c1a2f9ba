"""The protocol behind uvloop's buffered reads: what the ``pytusd`` command serves."""

from __future__ import annotations

import asyncio
from typing import Any

from pytusd.serving.budget import ReadBudget
from pytusd.serving.protocol import PytusdHttpProtocol


class BufferedHttpProtocol(asyncio.BufferedProtocol):
    """:class:`PytusdHttpProtocol` behind uvloop's buffered reads: one copy less per received byte.

    uvloop copies every read into a fresh ``bytes`` for ``data_received``, unless the protocol is
    a ``BufferedProtocol`` and *not* an ``asyncio.Protocol`` (uvicorn's classes are the latter).
    So this wrapper lends uvloop one buffer (the budget's, shared by all connections of the
    server: a buffer per connection would cost its size per idle keep-alive connection) and has
    httptools parse it in place.
    Nothing keeps a reference to the buffer after parsing: httptools hands out copies (header
    values, body chunks), and uvicorn handles parser errors and upgrades inside the call.

    Give it to uvicorn as ``http=functools.partial(BufferedHttpProtocol, budget=ReadBudget())``:
    uvicorn calls it with its keyword arguments. (The bare class works, but then each connection
    has a budget, and a buffer, of its own.)
    """

    __slots__ = ("budget", "buffer", "inner")

    def __init__(self, *, budget: ReadBudget | None = None, **uvicorn_kwargs: Any) -> None:
        self.budget = ReadBudget() if budget is None else budget
        self.buffer = self.budget.buffer()
        self.inner = PytusdHttpProtocol(budget=self.budget, **uvicorn_kwargs)

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
        return self.buffer[: self.budget.read_size()]

    def buffer_updated(self, nbytes: int) -> None:
        self.inner.data_received(self.buffer[:nbytes])  # type: ignore[arg-type]  # any buffer will do
