"""Commands of concurrent requests sharing round trips on one Redis connection (auto-pipelining).

The Redis locker's take and release are on the path of every PATCH. Through redis-py's client each
command costs a pool checkout, a retry wrapper, observability hooks, a timeout per read and a
packet each way; batched here on one of redis-py's connections (its packing and reply parsing
still do the protocol), a take+release costs a third to a quarter of the CPU under load
(bench/lock_cost.py; docs/decisions.md, "Redis locks"). redis-py has no such mode of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Errors that mean "Redis cannot be used right now" (redis-py raises its own, and OSError on connect).
UNAVAILABLE = (RedisError, OSError)
#: Errors worth another try on a new connection (Redis restarting, a failover, a dropped connection).
RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class Pipeline:
    """Commands of concurrent requests sent together on one connection (see the module docstring).

    A call queues its command; one task at a time writes every queued command in one packet and
    reads their replies in order, then takes whatever queued meanwhile. Idle, a command costs one
    round trip as before; busy, a round trip carries many (measured: 94 us of CPU per command one
    at a time, 32 us in fours, 19 us in eights). A batch that fails or times out drops the
    connection and fails its commands; failures that look like a restart are retried a few times
    with a short backoff (about a second in all), like the client's own retry policy.
    """

    RETRIES = 4

    def __init__(self, url: str, *, connect_timeout: float, command_timeout: float) -> None:
        # No per-read timeout in the connection: one deadline per batch instead (cheaper).
        self._pool = aioredis.ConnectionPool.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=None)
        self._timeout = command_timeout
        self._queue: list[tuple[tuple[str | int, ...], asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        #: script text -> SHA1, once loaded
        self._scripts: dict[str, str] = {}
        self._closed = False

    async def call(self, *args: str | int) -> Any:
        if self._closed:
            raise RedisConnectionError("the Redis connection is closed")
        delay = 0.05
        for attempt in range(self.RETRIES + 1):
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append((args, future))
            if self._runner is None:
                self._runner = asyncio.get_running_loop().create_task(self._run())
            try:
                return await future
            except RETRYABLE:
                if attempt == self.RETRIES:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def script(self, text: str, keys: list[str], args: list[str | int]) -> Any:
        """EVALSHA, loading the script first if Redis does not know it (a restarted Redis forgets)."""
        sha = self._scripts.get(text)
        if sha is not None:
            with contextlib.suppress(NoScriptError):  # forgotten: load it again below
                return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        sha = as_text(await self.call("SCRIPT", "LOAD", text))
        self._scripts[text] = sha
        return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._runner = None

    async def _send(self, batch: list[tuple[tuple[str | int, ...], asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                conn = self._conn or await self._connect()
                await conn.send_packed_command(conn.pack_commands([args for args, _ in batch]), check_health=False)
                for _, future in batch:
                    try:
                        reply = await conn.read_response()
                    except ResponseError as exc:  # an error reply: the connection is still in step
                        _settle(future, exc)
                    else:
                        _settle(future, reply)
        except BaseException as exc:
            await self._drop()
            failure = (
                RedisTimeoutError(f"no answer from Redis within {self._timeout} s")
                if isinstance(exc, TimeoutError)
                else exc
            )
            for _, future in batch:
                _settle(future, failure)
            if not isinstance(exc, Exception):
                raise

    async def _connect(self) -> AbstractConnection:
        conn: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*UNAVAILABLE, TimeoutError):
                await conn.disconnect()
            await self._pool.release(conn)

    async def close(self) -> None:
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.wait(
                [self._runner], timeout=5
            )  # not awaited directly: that could swallow our own cancellation
        queued, self._queue = self._queue, []
        for _, future in queued:
            _settle(future, RedisConnectionError("the locker is closed"))
        await self._drop()
        with contextlib.suppress(*UNAVAILABLE):
            await self._pool.disconnect()


def _settle(future: asyncio.Future[Any], outcome: object) -> None:
    """Give a queued command its reply or error (unless its caller gave up waiting)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def as_text(value: object) -> str:
    """A reply or message field (bytes from Redis) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
