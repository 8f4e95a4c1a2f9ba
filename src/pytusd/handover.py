"""When a request holding an upload's lock lets a newer request for the same upload have it.

tus and the IETF draft both expect a new request to stop an older one that still holds the upload:
the client only sends a new request once it believes the old one failed, and a connection can die
without the server noticing, so waiting for the old request to end could take minutes. But
stopping the holder on *every* newcomer lets clients that race on one upload (several tabs, retry
loops, a load balancer's duplicate) stop each other before any byte is written, and no one gets
anywhere.

The rule here: a holder whose body has received bytes within the last ``grace`` seconds is making
progress and keeps the lock (the newcomer waits, up to its lock timeout, then gets 423); a holder
whose body has been quiet for ``grace`` (counted from when it got the lock at the earliest: a
request that waited for the lock is not idle) is stopped (it saves what it received and answers). A
request that does not read a body (HEAD, DELETE, a body already received) is never interrupted:
what it does ends on its own. A lock that is lost (a Redis lock that lapsed) stops the body at
once, whatever the rule says.
"""

from __future__ import annotations

import asyncio
import time

from pytusd.locks.base import Lock, Locker
from pytusd.messages import Body

STOPPED_BY_REQUEST = "stopped by a newer request for this upload"
STOPPED_LOCK_LOST = "stopped: this request lost the upload's lock"


class Handover:
    """Stop requests to one lock holder, answered by the rule in the module docstring."""

    __slots__ = ("_body", "_grace", "_held_since", "_timer")

    def __init__(self, body: Body | None, grace: float) -> None:
        self._body = body
        self._grace = grace
        self._timer: asyncio.TimerHandle | None = None
        #: When the lock was taken: a request that waited for it is not quiet, it just got here.
        self._held_since = float("-inf")

    def held(self) -> None:
        """The lock is ours from now: quietness counts from here at the earliest."""
        self._held_since = time.monotonic()

    def request_stop(self) -> None:
        """Another request wants the lock (the locker's ``on_stop_request``)."""
        if self._timer is None:
            self._check()

    def lost(self) -> None:
        """The lock is gone (the locker's ``on_lost``): nothing more may be written."""
        if self._body is not None:
            self._body.stop(STOPPED_LOCK_LOST)

    def close(self) -> None:
        """The lock is released: no later check may stop the body."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._body = None

    def _check(self) -> None:
        self._timer = None
        body = self._body
        if body is None or body.stopped is not None or body.complete or body.disconnected:
            return
        quiet = min(body.quiet_for(), time.monotonic() - self._held_since)
        if quiet >= self._grace:
            body.stop(STOPPED_BY_REQUEST)
            return
        # Receiving: look again once it could have been quiet for the whole grace period.
        self._timer = asyncio.get_running_loop().call_later(self._grace - quiet, self._check)


class _HeldLock(Lock):
    __slots__ = ("_handover", "_lock")

    def __init__(self, lock: Lock, handover: Handover) -> None:
        self._lock, self._handover = lock, handover

    @property
    def held_here_last(self) -> bool:
        return self._lock.held_here_last

    async def release(self) -> None:
        self._handover.close()
        await self._lock.release()


async def lock_for(locker: Locker, upload_id: str, body: Body | None, *, grace: float, timeout: float) -> Lock:
    """``upload_id``'s lock for a request reading ``body`` (None: no body), stopped by the rule above."""
    handover = Handover(body, grace)
    lock = await locker.acquire(upload_id, handover.request_stop, timeout, on_lost=handover.lost)
    handover.held()
    return _HeldLock(lock, handover)
