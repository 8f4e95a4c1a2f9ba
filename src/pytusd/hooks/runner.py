"""What every transport shares: enabled events, time limits, post-receive pacing, failure policy.

A transport only says how one hook is invoked (:meth:`HookRunner.invoke`); this base turns its
result into what the handler expects:

- a blocking hook (pre-create, pre-finish, pre-terminate, pre-access) that fails, times out or
  answers garbage raises :class:`HookError` with a one-line reason and the status for the client;
- a non-blocking hook's failure is logged and answered with an empty :class:`HookResponse`, so it
  can never break an upload;
- post-receive runs at most once per ``progress_interval`` per upload (see :class:`ProgressPacer`).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from pytusd.hooks.base import (
    BLOCKING_EVENTS,
    HookError,
    HookEvent,
    HookRequest,
    HookResponse,
    Hooks,
    InvalidChange,
    InvalidHookResponse,
    validate_response,
)
from pytusd.info import UploadInfo

logger = logging.getLogger("pytusd.hooks")

#: Events whose hook may be cut off by a transport's time limit: a request waits for them.
#: post-create, post-finish and post-terminate run as long as they need (post-processing).
BOUNDED_EVENTS = BLOCKING_EVENTS | {HookEvent.POST_RECEIVE}


class ProgressPacer:
    """post-receive at most once per ``interval`` per upload, always with the latest offset.

    A call that comes too soon waits for the upload's next turn; if a newer call for the same upload
    arrives meanwhile, the older one gives up its turn (it returns False) and only the newest offset
    is reported. So a burst of small PATCH requests yields one hook per interval, and the last
    offset is never lost.
    """

    def __init__(self, interval: float, clock: Callable[[], float] | None = None) -> None:
        self.interval = interval
        self._clock = clock or time.monotonic
        self._last: dict[str, float] = {}
        self._latest: dict[str, int] = {}
        self._seq = 0

    async def turn(self, upload_id: str) -> bool:
        """Wait for ``upload_id``'s turn; False if a newer call took it."""
        if self.interval <= 0:
            return True
        self._seq += 1
        token = self._seq
        self._latest[upload_id] = token
        now = self._clock()
        self._prune(now)
        last = self._last.get(upload_id)
        if last is not None and now - last < self.interval:
            try:
                await asyncio.sleep(last + self.interval - now)
            except asyncio.CancelledError:
                if self._latest.get(upload_id) == token:
                    del self._latest[upload_id]
                raise
            if self._latest.get(upload_id) != token:
                return False
        self._last[upload_id] = self._clock()
        if self._latest.get(upload_id) == token:
            del self._latest[upload_id]
        return True

    def _prune(self, now: float) -> None:
        if len(self._last) < 256:
            return
        for key in [k for k, t in self._last.items() if now - t >= self.interval]:
            del self._last[key]


class Retryable(Exception):
    """An attempt of a network transport failed in a way worth another try (``error`` if not)."""

    def __init__(self, error: HookError) -> None:
        super().__init__(str(error))
        self.error = error


async def with_retries(
    attempt: Callable[[], Awaitable[HookResponse]], *, attempts: int, backoff: float, what: str
) -> HookResponse:
    """Call ``attempt`` up to ``attempts`` times, ``backoff`` seconds apart, while it raises
    :class:`Retryable`; then raise the last error. The HTTP and gRPC transports share it."""
    done = 1
    while True:
        try:
            return await attempt()
        except Retryable as exc:
            if done >= attempts:
                raise exc.error from None
            done += 1
            logger.info("%s: %s; attempt %d of %d", what, exc.error, done, attempts)
            await asyncio.sleep(backoff)


class HookRunner(Hooks):
    """Base of the transports: implement :meth:`invoke`, get the policy above.

    ``events``: the events to run hooks for (a transport may narrow it further in :meth:`enabled`).
    ``timeout``: seconds a pre-* or post-receive hook may take (None: no limit).
    """

    #: Which transport this is, for messages ("HTTP hook", "hook program", "Python hook").
    kind = "hook"
    #: Status for a client when a blocking hook answers garbage (a gateway's 502 for remote hooks).
    invalid_status = 502

    def __init__(
        self,
        events: Iterable[HookEvent | str],
        *,
        progress_interval: float = 1.0,
        timeout: float | None = None,
    ) -> None:
        self.events = frozenset(HookEvent(e) for e in events)
        self.progress_interval = progress_interval
        self.timeout = timeout if timeout else None
        self.pacer = ProgressPacer(progress_interval)

    def enabled(self, event: HookEvent) -> bool:
        return event in self.events

    @abc.abstractmethod
    async def invoke(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        """Run one hook. Raise :class:`HookError` (or :class:`InvalidHookResponse`) on failure."""

    async def run(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        if event == HookEvent.POST_RECEIVE and not await self.pacer.turn(info.id):
            return HookResponse()
        self.metrics.hook_invoked(event)
        blocking = event in BLOCKING_EVENTS
        try:
            if self.timeout is not None and event in BOUNDED_EVENTS:
                try:
                    async with asyncio.timeout(self.timeout):
                        answer = await self.invoke(event, info, request)
                except TimeoutError:
                    raise HookError(f"{event} {self.kind} timed out after {self.timeout:g}s", 504) from None
            else:
                answer = await self.invoke(event, info, request)
            validate_response(answer)
        except InvalidHookResponse as exc:
            status = 400 if isinstance(exc, InvalidChange) else self.invalid_status
            error = HookError(f"{event} {self.kind} answered an invalid response: {exc}", status)
            return self._failed(event, info, error, blocking)
        except HookError as exc:
            return self._failed(event, info, exc, blocking)
        return answer

    def _failed(self, event: HookEvent, info: UploadInfo, error: HookError, blocking: bool) -> HookResponse:
        self.metrics.hook_failed(event)
        upload = info.id or "(new upload)"
        if blocking:
            logger.warning("%s failed for %s: %s", event, upload, error)
            raise error
        logger.warning("%s failed for %s (ignored, the hook does not block): %s", event, upload, error)
        return HookResponse()
