"""The ASGI application: mount it in any ASGI framework, or let ``pytusd`` serve it.

This module only translates between ASGI messages and the dispatcher's Request/Response; every
rule lives in ``protocol``, the front ends (``tus``, ``ietf``) and the upload service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import unquote

from pytusd.config import Config
from pytusd.dispatch import Dispatcher
from pytusd.hooks.base import Hooks
from pytusd.idle import watch_bodies
from pytusd.locks.base import Locker
from pytusd.messages import Headers, InterimSender, Request, Response
from pytusd.metrics.recorder import NO_METRICS, Recorder
from pytusd.protocol.errors import HTTPError
from pytusd.stores.base import DataStore
from pytusd.sweep import sweep_expired
from pytusd.uploads import UploadService

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("pytusd")

#: Scope extensions offered by pytusd's serving layer (see pytusd.serving); absent elsewhere.
INTERIM_EXTENSION = "pytusd.interim"
TRAILERS_EXTENSION = "pytusd.trailers"
SPLICE_EXTENSION = "pytusd.splice"


class ASGIBody:
    """A request body read from ASGI ``receive``, which its consumer can be told to stop.

    Stopping must work while the reader is blocked waiting for a client that sends nothing (a
    connection that died unnoticed), so ``stop`` cancels the waiting task and the iterator swallows
    exactly that cancellation: cheap per chunk (two attribute writes), no extra task per receive.
    """

    __slots__ = ("_cancelled_by_stop", "_heard_at", "_into", "_receive", "_scope", "_stopped", "_task", "_waiting",
                 "complete", "disconnected")  # fmt: skip

    def __init__(self, receive: Receive, scope: Scope) -> None:
        self._receive = receive
        self._scope = scope
        self._stopped: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._waiting = False
        self._cancelled_by_stop = False
        self.complete = False
        self.disconnected = False
        #: Since when the reader has waited for bytes without any arriving (monotonic); while the
        #: body writes itself, the file and its position then, which show progress the chunk loop
        #: cannot see.
        self._heard_at = time.monotonic()
        self._into: tuple[int, int] | None = None

    @property
    def stopped(self) -> str | None:
        return self._stopped

    def stop(self, reason: str) -> None:
        if self._stopped is None:
            self._stopped = reason
        if self._waiting and self._task is not None and not self._cancelled_by_stop:
            self._cancelled_by_stop = True
            self._task.cancel()

    @property
    def can_read_trailers(self) -> bool:
        return TRAILERS_EXTENSION in (self._scope.get("extensions") or {})

    def trailers(self) -> Mapping[str, str] | None:
        getter = (self._scope.get("extensions") or {}).get(TRAILERS_EXTENSION, {}).get("get")
        if getter is None or not self.complete:
            return None
        return _join_headers(getter())

    @property
    def can_write_into(self) -> bool:
        return SPLICE_EXTENSION in (self._scope.get("extensions") or {})

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        """The rest of the body (at most ``limit`` bytes) into ``fd`` through ``pytusd.splice``."""
        if self.complete or self.disconnected or self._stopped is not None:
            return 0
        into = self._scope["extensions"][SPLICE_EXTENSION]["into"]
        start = os.lseek(fd, 0, os.SEEK_CUR)
        self._task = asyncio.current_task()
        self._waiting = True
        self._heard_at = time.monotonic()
        self._into = (fd, start)
        try:
            written, complete = await into(fd, limit, moved)
        except asyncio.CancelledError:
            if self._cancelled_by_stop and self._task is not None:
                self._task.uncancel()
                # Stopped between two moves: the splices advanced the file position.
                return os.lseek(fd, 0, os.SEEK_CUR) - start
            raise
        finally:
            self._waiting = False
            self._into = None
        if complete:
            self.complete = True
        elif limit is None or written < limit:
            self.disconnected = True
        return int(written)

    def quiet_for(self) -> float:
        if not self._waiting:
            return 0.0  # busy with what it received (a slow store is not a quiet client)
        now = time.monotonic()
        if self._into is not None:
            fd, seen = self._into
            with contextlib.suppress(OSError):
                position = os.lseek(fd, 0, os.SEEK_CUR)
                if position != seen:
                    self._into, self._heard_at = (fd, position), now
        return now - self._heard_at

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self.complete or self.disconnected:
            return
        self._task = asyncio.current_task()
        receive = self._receive
        while self._stopped is None:
            self._waiting = True
            self._heard_at = time.monotonic()  # quiet from here: the chunk before is written
            try:
                message = await receive()
            except asyncio.CancelledError:
                if self._cancelled_by_stop and self._task is not None:
                    self._task.uncancel()
                    return
                raise
            finally:
                self._waiting = False
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                self.complete = True
                if chunk:
                    yield chunk
                return
            if chunk:
                yield chunk


def _join_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip(" \t")  # RFC 9110 5.5: not part of the value
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class TusApp:
    """The pytusd ASGI application.

    >>> app = TusApp(FileStore("./data"), Config(base_path="/files/"))

    Mounted apps get no lifespan events in most frameworks, so the store is started on the first
    request as well as on lifespan startup.

    ``metrics``: where requests, uploads, hooks and connections are counted (e.g.
    :class:`pytusd.metrics.prometheus.Metrics`; default: nowhere). ``metrics_path``: a path,
    matched before the upload routes, that answers scrapes of ``metrics`` (None: not served here;
    an embedding framework can serve ``metrics.exposition()`` on a route of its own).
    """

    def __init__(
        self,
        store: DataStore,
        config: Config | None = None,
        *,
        locker: Locker | None = None,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Recorder = NO_METRICS,
        metrics_path: str | None = None,
    ) -> None:
        self.config = config or Config()
        self.store = store
        #: Read by pytusd's serving layer too, which counts connections there.
        self.metrics = metrics
        self.metrics_path = metrics_path
        store.record_requests(metrics)
        #: The upload service (``clock``: seconds since the epoch, injectable for expiry tests).
        self.uploads = UploadService(store, self.config, locker=locker, hooks=hooks, clock=clock, metrics=metrics)
        self.dispatcher = Dispatcher(self.uploads)
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._idle_watch: asyncio.Task[None] | None = None
        #: The event loop serving this app (set on start), for signal handlers in other contexts.
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self) -> None:
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            self.loop = asyncio.get_running_loop()
            await self.store.start()
            if self.config.expire_after:
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
            if self.config.network_timeout:
                watch = watch_bodies(self.uploads.receiving, self.config.network_timeout)
                self._idle_watch = asyncio.get_running_loop().create_task(watch)
            self._started = True

    async def shutdown(self) -> None:
        """Stop bodies in flight (they save what they have), then close the store and locker."""
        self.uploads.shutdown()
        for task in (self._sweeper, self._idle_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.uploads.wait_background()
        await self.uploads.hooks.aclose()
        await self.uploads.locker.close()
        await self.store.close()
        self.metrics.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.expire_interval)
            try:
                removed = await sweep_expired(self.uploads)
                if removed:
                    logger.info("removed %d expired uploads", removed)
            except Exception:
                logger.exception("expiration sweep failed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _path(self, scope: Scope) -> str:
        """The request's path below which ``base_path`` is looked for. Mounted apps get the path
        below the mount: Starlette keeps the mount in ``root_path``; Litestar keeps it nowhere but
        ``raw_path`` (and appends a '/'), so that is the last resort."""
        path: str = scope["path"]
        base = self.config.base_path
        if path.startswith(base) or path + "/" == base:
            return path
        mounted = str(scope.get("root_path", "")) + path
        raw = scope.get("raw_path")
        if mounted.startswith(base) or not isinstance(raw, bytes):
            return mounted
        whole = unquote(raw.decode("latin-1").split("?", 1)[0])
        return whole if whole.startswith(base) or whole + "/" == base else mounted

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == self.metrics_path:
            text = self.metrics.exposition()
            if text is not None:
                # Any method, as tusd's handler; a scrape is not a request of the upload protocol.
                response = Response(200, [("content-type", self.metrics.content_type)], text)
                await _send_response(send, response, head=scope["method"] == "HEAD")
                return
        if not self._started:
            await self.startup()
        raw = scope["headers"]
        headers = _join_headers(raw)
        if "host" not in headers and scope.get("http_version") == "1.1":
            # RFC 9112 3.2: an HTTP/1.1 request without Host gets a 400 (counted as every answer).
            started = time.perf_counter()
            self.metrics.request(scope["method"])
            self.metrics.failed(HTTPError(400, "missing Host header"))
            await _send_response(send, Response(400, [("content-type", "text/plain; charset=utf-8")],
                                                b"missing Host header\n"), head=False)  # fmt: skip
            self.metrics.responded(scope["method"], time.perf_counter() - started)
            return
        server = scope.get("server")
        client = scope.get("client")
        interim: InterimSender | None = None
        extension = (scope.get("extensions") or {}).get(INTERIM_EXTENSION)
        if extension is not None and self.config.interim_responses:
            interim = _interim_sender(extension["send"])
        request = Request(
            method=scope["method"],
            path=self._path(scope),
            headers=headers,
            body=ASGIBody(receive, scope),
            scheme=scope.get("scheme", "http"),
            server_host=f"{server[0]}:{server[1]}" if server and server[1] is not None else None,
            client_addr=f"{client[0]}:{client[1]}" if client else "",
            query=scope.get("query_string", b"").decode("latin-1"),
            send_interim=interim,
            raw_headers=raw,
        )
        response = await self.dispatcher.handle(request)
        await _send_response(send, response, head=scope["method"] == "HEAD", receive=receive)


def _interim_sender(raw_send: Callable[[int, list[tuple[bytes, bytes]]], Awaitable[None]]) -> InterimSender:
    async def send_interim(status: int, headers: Headers) -> None:
        await raw_send(status, [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers])

    return send_interim


async def _send_response(send: Send, response: Response, *, head: bool, receive: Receive | None = None) -> None:
    body = response.body
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
    if isinstance(body, bytes):
        if not any(n == b"content-length" for n, _ in headers):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    try:
        if not head:
            await _stream(send, body, receive)
    finally:
        if hasattr(body, "aclose"):
            await body.aclose()
    await send({"type": "http.response.body", "body": b""})


async def _stream(send: Send, body: AsyncIterator[bytes], receive: Receive | None) -> None:
    """Send ``body`` chunk by chunk until it ends or the client has gone.

    A server drops what is sent after the client has gone without saying so (uvicorn does), so
    a download would go on reading the store to its end: a whole object from S3 for a video
    player that seeks away. ``receive`` says ``http.disconnect`` then (ASGI), so it is watched
    beside the sending, and at most the chunk being read is read after the client went.
    """
    watcher = asyncio.ensure_future(_until_disconnect(receive)) if receive is not None else None
    try:
        async for chunk in body:
            if watcher is not None and _gone(watcher):
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        if watcher is not None:
            watcher.cancel()


async def _until_disconnect(receive: Receive) -> bool:
    """True once the client has gone; False if ``receive`` cannot tell.

    A request body nobody read (a GET may have one) is dropped. After the body, ASGI's
    ``receive`` waits until the client disconnects; one that answers at once again instead
    cannot be watched without spinning, so it is not.
    """
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True
        if not message.get("more_body", False):
            break
    return bool((await receive())["type"] == "http.disconnect")


def _gone(watcher: asyncio.Future[bool]) -> bool:
    return watcher.done() and not watcher.cancelled() and watcher.exception() is None and watcher.result()
