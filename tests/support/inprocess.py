"""The upload service and both front ends without a socket: requests in, responses out.

For tests of rules and steps that need no web server: a fake clock makes expiry exact (no
sleeps), bodies are lists of chunks that may wait for an event before the next one.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping

from pytusd.config import Config
from pytusd.dispatch import Dispatcher
from pytusd.hooks.base import Hooks
from pytusd.locks.base import Locker
from pytusd.messages import Request, Response
from pytusd.stores.base import DataStore
from pytusd.stores.memory import MemoryStore
from pytusd.uploads import UploadService

HOST = "example.org"


class Clock:
    """Seconds since the epoch that move only when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ListBody:
    """A request body that yields the given chunks; before a chunk, it may wait for an event.

    ``consumed`` is set once the consumer has taken the first chunk and asks for the next (so a
    store has written it); ``stop_requested`` once someone called :meth:`stop`.
    """

    def __init__(self, *chunks: bytes, wait_before: Mapping[int, asyncio.Event] | None = None) -> None:
        self.chunks = list(chunks)
        self.wait_before = dict(wait_before or {})
        self.consumed = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.stopped: str | None = None
        self.disconnected = False
        self.complete = False
        self.can_write_into = False
        self.can_read_trailers = False
        self.last_chunk_at = time.monotonic()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == 1:
                self.consumed.set()
            event = self.wait_before.get(index)
            if event is not None:
                await asyncio.wait_for(event.wait(), 10)
            if self.stopped is not None:
                return
            self.last_chunk_at = time.monotonic()
            yield chunk
        self.complete = True

    def stop(self, reason: str) -> None:
        self.stopped = reason
        self.stop_requested.set()

    def trailers(self) -> Mapping[str, str] | None:
        return None

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        raise AssertionError("this body cannot write itself")

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_chunk_at


class SelfWritingBody(ListBody):
    """A body that, like one served by pytusd's serving layer, can write itself into a descriptor."""

    def __init__(self, *chunks: bytes) -> None:
        super().__init__(*chunks)
        self.can_write_into = True
        self.wrote_itself = False
        self._data = b"".join(chunks)
        self._position = 0

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        self.wrote_itself = True
        end = len(self._data) if limit is None else min(len(self._data), self._position + limit)
        written = 0
        while self._position < end:
            count = os.write(fd, self._data[self._position : end])
            self._position += count
            written += count
            if moved is not None:
                moved(count)
            await asyncio.sleep(0)
        self.complete = self._position == len(self._data)
        return written


class Server:
    """A dispatcher over an upload service, called in the running event loop."""

    def __init__(
        self,
        store: DataStore | None = None,
        *,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
        locker: Locker | None = None,
        **config: object,
    ) -> None:
        self.clock = clock or Clock()
        self.store = store if store is not None else MemoryStore(clock=self.clock)
        self.service = UploadService(self.store, Config(**config), locker=locker, hooks=hooks, clock=self.clock)  # type: ignore[arg-type]
        self.dispatcher = Dispatcher(self.service)

    async def call(
        self, method: str, path: str, body: ListBody | None = None, *, tus: bool = True, **headers: str
    ) -> Response:
        """One request; header names as keyword arguments (``upload_length="5"``)."""
        all_headers = {"host": HOST}
        if tus:
            all_headers["tus-resumable"] = "1.0.0"
        all_headers.update({k.replace("_", "-").lower(): v for k, v in headers.items()})
        raw = [(k.encode(), v.encode()) for k, v in all_headers.items()]
        request = Request(method=method, path=path, headers=all_headers, raw_headers=raw)
        if body is not None:
            request.body = body
        return await self.dispatcher.handle(request)

    async def create(self, length: int | None, **headers: str) -> str:
        """A new tus upload's path."""
        if length is None:
            headers["upload_defer_length"] = "1"
        else:
            headers["upload_length"] = str(length)
        response = await self.call("POST", "/files/", **headers)
        assert response.status == 201, (response.status, response.body)
        return path_of(response)

    async def patch(
        self, path: str, data: bytes, offset: int, *, body: ListBody | None = None, **headers: str
    ) -> Response:
        """A tus PATCH of ``data`` (or of ``body``, whose Content-Length then goes in ``headers``)."""
        if body is None:
            body = ListBody(data)
            headers.setdefault("content_length", str(len(data)))
        return await self.call(
            "PATCH", path, body, upload_offset=str(offset), content_type="application/offset+octet-stream", **headers
        )


def header(response: Response, name: str) -> str | None:
    return next((v for k, v in response.headers if k == name), None)


def path_of(response: Response) -> str:
    location = header(response, "location")
    assert location is not None and location.startswith(f"http://{HOST}/"), location
    return location.removeprefix(f"http://{HOST}")
