"""Locks kept in Redis: one writer per upload across every pytusd instance on every machine.

A lock is a key ``<prefix>lock:<upload id>`` holding a token unique to its holder, set with
``SET NX PX <ttl>``. While the holder's request runs, its process renews every lock it holds (one
pipelined script call per second at most), so a lock outlives its TTL only while its holder lives:
an instance that is killed blocks its uploads for at most the TTL.

Requests in the same process meet in a :class:`~pytusd.locks.memory.MemoryLocker` first (no round
trip, instant stop requests). Across processes a waiter publishes the upload's ID on the channel
``<prefix>stop``; every instance listens on it and passes the request to its holder, if it has
one. One channel for all uploads, not one per upload: holding a lock then costs no SUBSCRIBE
round trip, and stop requests only flow when requests collide. A waiter leaves a short-lived
``<prefix>wait:<id>`` key, and the release script announces the release on ``<prefix>released``
only when that key is there, so an uncontended lock costs exactly two round trips (SET, release).
Messages can be lost (a listener reconnecting), so waiters also retry on a short poll and repeat
their stop request.

The two commands every lock costs (take, release) go through :class:`~pytusd.locks.pipeline.Pipeline`: one connection
on which the commands of concurrent requests share round trips. redis-py's command path (pool
checkout, retry wrapper, observability, a timeout per read, a packet each way per command) costs
several times as much CPU per command under load, and a lock per PATCH is on the path of every
upload (measured: docs/decisions.md).

Redis unreachable: acquiring raises :class:`~pytusd.locks.base.LockUnavailable` (the request gets
503 and retries). A held lock whose renewal finds it taken by someone else, or that could not be
confirmed for longer than its TTL, is lost: its holder is told to stop writing at once. When Redis
restarts empty, renewal takes each held lock back (no one else holds it) and work goes on.

Continuity (:attr:`~pytusd.locks.base.Lock.held_here_last`): a release that deletes its own key
leaves its token in ``<prefix>last:<upload id>`` (for an hour), and a take that sets the key reads
and deletes it in the same script. The locker remembers the token of its own last lock per upload:
the take was preceded by our own release, with no holder in between, exactly when the two match.
A holder that died or lost its lock leaves no ``last``, and our next take's GETDEL already removed
ours; so does a Redis that restarted empty. A renewal that finds the key gone sets it back marked
(see ``_RENEW``), and the release of a key set back leaves no ``last``: someone may have held the
lock while it was gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from pytusd.locks.base import Lock, Locker, LockTimeout, LockUnavailable, StopCallback
from pytusd.locks.memory import MemoryLocker
from pytusd.locks.pipeline import UNAVAILABLE, Pipeline, as_text
from pytusd.protocol.urls import is_valid_upload_id

logger = logging.getLogger("pytusd")

#: Renew: the key is ours unless another token holds it. 1: it was ours (extended), 2: set now,
#: 0: someone else's. Renewing takes a lock back if Redis lost it (restarted empty); a key set back
#: so holds our token marked with '~' (someone may have held the lock while it was gone: its release
#: leaves no ``last``).
_RENEW = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] or v == ARGV[1] .. '~' then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('set', KEYS[1], ARGV[1] .. '~', 'px', ARGV[2]) return 2 end
return 0
"""
#: Take: the key is ours unless another token holds it; idempotent (a retried take whose first reply
#: was lost finds its own token). When it sets the key, it also reads and deletes the ``last`` token
#: (a holder that never releases must not leave an older one standing). {0}: someone else's, {1}: it
#: was ours (extended), {2[, last]}: set now.
_TAKE = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return {1} end
if v then return {0} end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
local last = redis.call('get', KEYS[2])
if last then redis.call('del', KEYS[2]) return {2, last} end
return {2}
"""
#: Release only our own lock, leaving our token as ``last`` (ARGV[3] = '1', and never set back by a
#: renewal) or none; announce it when someone waits.
_RELEASE = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] or v == ARGV[1] .. '~' then
  redis.call('del', KEYS[1])
  if v == ARGV[1] and ARGV[3] == '1' then
    redis.call('set', KEYS[4], ARGV[1], 'px', ARGV[4])
  else
    redis.call('del', KEYS[4])
  end
end
if redis.call('del', KEYS[2]) == 1 then redis.call('publish', KEYS[3], ARGV[2]) end
return 1
"""
#: How long a released lock's token stays as ``last`` (after that, the next take answers False).
LAST_TTL_MS = 3600 * 1000
#: Uploads whose last token a locker remembers (least recently taken dropped first).
REMEMBER = 100_000
#: A leader keeps its turn while it lives (it asks again before the turn lapses); another instance
#: takes it once it lapses.
_LEAD = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2]) return 1 end
return 0
"""


class _RedisLock(Lock):
    __slots__ = (
        "_inner",
        "_key",
        "_last",
        "_locker",
        "confirmed",
        "forgotten",
        "on_lost",
        "on_stop_request",
        "token",
        "upload_id",
    )

    def __init__(
        self,
        locker: RedisLocker,
        upload_id: str,
        token: str,
        on_stop_request: StopCallback,
        on_lost: StopCallback | None,
        inner: Lock,
        confirmed: float,
        last: bool,
    ) -> None:
        self._locker, self.upload_id, self.token, self._inner = locker, upload_id, token, inner
        self._key = locker.key("lock", upload_id)
        self.on_stop_request, self.on_lost, self.confirmed = on_stop_request, on_lost, confirmed
        self._last = last
        #: the upload was terminated while held: its release leaves no ``last``
        self.forgotten = False

    @property
    def held_here_last(self) -> bool:
        return self._last

    async def release(self) -> None:
        try:
            await self._locker.release_remote(self)
        finally:
            await self._inner.release()


class RedisLocker(Locker):
    """Locks in Redis at ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``); see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 10.0,
        prefix: str = "pytusd:",
        poll_interval: float = 0.05,
        ask_interval: float = 0.5,
        connect_timeout: float = 1.0,
        command_timeout: float = 2.0,
        client: aioredis.Redis | None = None,
    ) -> None:
        if ttl < 1.0:
            raise ValueError("the Redis lock TTL must be at least 1 second")
        self.ttl = ttl
        self.prefix = prefix
        self.poll_interval = poll_interval
        self.ask_interval = ask_interval
        # Bounded waits everywhere: a Redis that stops answering must turn into a 503, not a hang.
        # A few quick retries ride out a restart or failover (about a second) unnoticed by clients.
        self._redis = client or aioredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            health_check_interval=15,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=4),
        )
        self._pipeline = Pipeline(url, connect_timeout=connect_timeout, command_timeout=command_timeout)
        self._lead = self._redis.register_script(_LEAD)
        self.instance = uuid.uuid4().hex
        self._tokens = itertools.count()
        self._local = MemoryLocker(remember=0)
        #: upload ID -> the token of our last lock of it (least recently taken first)
        self._last_tokens: OrderedDict[str, str] = OrderedDict()
        #: upload ID -> the lock this process holds on it (one at most: see the memory locker)
        self._held: dict[str, _RedisLock] = {}
        #: upload ID -> set when Redis announces its release (a waiter of this process wants it)
        self._wakeups: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        #: releases of keys whose SET a cancelled request may have made
        self._undoing: set[asyncio.Task[None]] = set()

    def key(self, kind: str, upload_id: str) -> str:
        return f"{self.prefix}{kind}:{upload_id}"

    @property
    def _stop_channel(self) -> str:
        return self.prefix + "stop"

    @property
    def _released_channel(self) -> str:
        return self.prefix + "released"

    @property
    def _ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    # -- acquiring and releasing --------------------------------------------------------------

    async def acquire(
        self,
        upload_id: str,
        on_stop_request: StopCallback,
        timeout: float,
        *,
        stop_holder: bool = True,
        on_lost: StopCallback | None = None,
    ) -> Lock:
        if not is_valid_upload_id(upload_id):
            raise ValueError("invalid upload id")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        inner = await self._local.acquire(upload_id, on_stop_request, timeout, stop_holder=stop_holder)
        try:
            self._start_background()
            token = f"{self.instance}:{next(self._tokens)}"
            previous = await self._take(upload_id, token, deadline, stop_holder)
        except BaseException:
            await inner.release()
            raise
        last = previous is not None and self._last_tokens.get(upload_id) == previous
        self._last_tokens[upload_id] = token
        self._last_tokens.move_to_end(upload_id)
        if len(self._last_tokens) > REMEMBER:
            self._last_tokens.popitem(last=False)
        lock = _RedisLock(self, upload_id, token, on_stop_request, on_lost, inner, loop.time(), last)
        self._held[upload_id] = lock
        return lock

    async def _take(self, upload_id: str, token: str, deadline: float, stop_holder: bool) -> str | None:
        """Take the key; the ``last`` token it held before, if the take set the key and read one."""
        loop = asyncio.get_running_loop()
        key, wait_key = self.key("lock", upload_id), self.key("wait", upload_id)
        asked_at = float("-inf")
        wakeup = None
        try:
            while True:
                try:
                    taken = await self._claim_or_undo(key, token, upload_id)
                    if taken:
                        return taken if isinstance(taken, str) else None
                    now = loop.time()
                    ask = stop_holder and now - asked_at >= self.ask_interval
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.set(wait_key, "1", px=self._ttl_ms)
                        if ask:
                            pipe.publish(self._stop_channel, upload_id)
                        await pipe.execute()
                except UNAVAILABLE as exc:
                    raise LockUnavailable(f"Redis: {exc}") from exc
                if ask:
                    asked_at = now
                if now >= deadline:
                    raise LockTimeout(upload_id)
                if wakeup is None:
                    wakeup = self._wakeups.setdefault(upload_id, asyncio.Event())
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), min(self.poll_interval, deadline - now))
        finally:
            if wakeup is not None and self._wakeups.get(upload_id) is wakeup:
                del self._wakeups[upload_id]

    async def _claim_or_undo(self, key: str, token: str, upload_id: str) -> bool | str:
        """Take the key if it is free: False if someone else holds it, else the ``last`` token the
        take consumed or True (none). If we are cancelled or Redis fails meanwhile, the key may be
        ours all the same: remove it (in the background), so no request of ours waits a TTL for it."""
        try:
            reply = await self._pipeline.script(_TAKE, [key, self.key("last", upload_id)], [token, self._ttl_ms])
        except (asyncio.CancelledError, *UNAVAILABLE):
            self._release_later(upload_id, token)
            raise
        code = int(reply[0])
        if code == 2 and len(reply) > 1:
            return as_text(reply[1]) or True  # tokens are never empty
        # {1}: a retried take whose first reply was lost; what that consumed is unknown (no last).
        return code != 0

    def _release_later(self, upload_id: str, token: str) -> None:
        task = asyncio.get_running_loop().create_task(self._release_key(upload_id, token))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    async def _release_key(self, upload_id: str, token: str, *, record: bool = False) -> None:
        """Release; ``record``: leave our token as ``last`` (only for a lock held without doubt)."""
        keys = [
            self.key("lock", upload_id),
            self.key("wait", upload_id),
            self._released_channel,
            self.key("last", upload_id),
        ]
        try:
            await self._pipeline.script(_RELEASE, keys, [token, upload_id, "1" if record else "0", LAST_TTL_MS])
        except UNAVAILABLE as exc:
            # The key lapses within the TTL by itself; the request's work is done and saved.
            logger.warning("could not release the Redis lock of %s (it expires by itself): %s", upload_id, exc)

    async def release_remote(self, lock: _RedisLock) -> None:
        """Drop ``lock``'s key in Redis (if it is still ours) and wake a waiter, if any."""
        held = self._held.get(lock.upload_id) is lock
        if held:
            del self._held[lock.upload_id]
        await self._release_key(lock.upload_id, lock.token, record=held and not lock.forgotten)

    async def lead(self, task: str, period: float) -> bool:
        try:
            taken = await self._lead(keys=[self.key("lead", task)], args=[self.instance, int(period * 1000)])
        except UNAVAILABLE as exc:
            logger.warning("Redis unreachable, skipping %s this time: %s", task, exc)
            return False
        return bool(taken)

    async def forget(self, upload_id: str) -> None:
        self._last_tokens.pop(upload_id, None)
        lock = self._held.get(upload_id)
        if lock is not None:  # no ``last`` key left behind for a terminated upload
            lock.forgotten = True

    async def close(self) -> None:
        self._closed = True  # the loops end even if redis-py turns their cancellation into an error
        tasks = [task for task in (self._listener, self._renewer) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._listener = self._renewer = None
        await self._pipeline.close()
        with contextlib.suppress(*UNAVAILABLE):
            await self._redis.aclose()

    # -- background: stop requests, release notices, renewal ---------------------------------

    def _start_background(self) -> None:
        if self._closed:
            raise LockUnavailable("the Redis locker is closed")
        loop = asyncio.get_running_loop()
        if self._listener is None or self._listener.done():
            self._listener = loop.create_task(self._listen_forever())
        if self._renewer is None or self._renewer.done():
            self._renewer = loop.create_task(self._renew_forever())

    async def _listen_forever(self) -> None:
        """Pass stop requests to this process's holders and release notices to its waiters."""
        backoff = 0.05
        while not self._closed:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._stop_channel, self._released_channel)
                backoff = 0.05
                self._wake_all()  # notices may have been missed while disconnected
                while not self._closed:
                    # A bounded wait (None when nothing came): redis-py before 8 would treat an
                    # idle blocking read as a timeout and drop the connection every few seconds.
                    # redis-py can also mistake our cancellation for that timeout: hence the checks.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    _reraise_cancellation()
                    if message is not None:
                        self._dispatch(message)
            except UNAVAILABLE as exc:
                _reraise_cancellation()
                logger.debug("Redis pub/sub connection lost (%s); reconnecting", exc)
            finally:
                with contextlib.suppress(*UNAVAILABLE):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = as_text(message.get("channel"))
        upload_id = as_text(message.get("data"))
        if channel == self._stop_channel:
            holder = self._held.get(upload_id)
            if holder is not None:
                holder.on_stop_request()
        elif channel == self._released_channel:
            wakeup = self._wakeups.get(upload_id)
            if wakeup is not None:
                wakeup.set()

    def _wake_all(self) -> None:
        for wakeup in self._wakeups.values():
            wakeup.set()

    async def _renew_forever(self) -> None:
        """Renew every held lock once a second (or a third of the TTL, if shorter).

        A renewal gets at most one interval; a lock counts as confirmed from the moment its renewal
        was sent. One not confirmed for a TTL minus an interval is given up before another instance
        could take it (a partition), and one that another token holds is lost at once.
        """
        loop = asyncio.get_running_loop()
        interval = min(1.0, self.ttl / 3)
        while not self._closed:
            _reraise_cancellation()
            await asyncio.sleep(interval)
            held = list(self._held.values())
            if not held:
                continue
            sent_at = loop.time()
            results: list[object]
            try:
                async with asyncio.timeout(interval):
                    results = await asyncio.gather(
                        *(self._pipeline.script(_RENEW, [self.key("lock", lock.upload_id)], [lock.token, self._ttl_ms])
                          for lock in held),
                        return_exceptions=True,
                    )  # fmt: skip
            except TimeoutError as exc:
                _reraise_cancellation()
                results = [exc] * len(held)
            now = loop.time()
            for lock, result in zip(held, results, strict=True):
                if self._held.get(lock.upload_id) is not lock:
                    if result == 2:  # released meanwhile, and the renewal set the key again: undo it
                        self._release_later(lock.upload_id, lock.token)
                elif isinstance(result, BaseException):
                    logger.warning("could not renew the Redis lock of %s: %s", lock.upload_id, result)
                    if now - lock.confirmed > self.ttl - interval:
                        self._lose(lock, "it could not be renewed for a lock TTL")
                elif result:
                    lock.confirmed = sent_at
                else:
                    self._lose(lock, "another instance holds it")

    def _lose(self, lock: _RedisLock, why: str) -> None:
        if self._held.get(lock.upload_id) is not lock:
            return
        del self._held[lock.upload_id]  # no more renewals or stop requests: it is not ours
        logger.warning("lost the Redis lock of upload %s: %s", lock.upload_id, why)
        if lock.on_lost is not None:
            lock.on_lost()


def _reraise_cancellation() -> None:
    """redis-py may turn a cancellation into a connection error: a loop must not swallow it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
