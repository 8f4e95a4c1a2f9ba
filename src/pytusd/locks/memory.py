"""Locks inside one process: an asyncio event per held upload."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from pytusd.locks.base import Lock, Locker, LockTimeout, StopCallback

#: How many released upload IDs a locker remembers for :attr:`Lock.held_here_last` (least recent dropped).
REMEMBER = 100_000


class _Holder:
    __slots__ = ("forgotten", "on_stop_request", "released")

    def __init__(self, on_stop_request: StopCallback) -> None:
        self.on_stop_request = on_stop_request
        self.released = asyncio.Event()
        self.forgotten = False


class _MemoryLock(Lock):
    __slots__ = ("_holder", "_id", "_last", "_locker")

    def __init__(self, locker: MemoryLocker, upload_id: str, holder: _Holder, last: bool) -> None:
        self._locker, self._id, self._holder, self._last = locker, upload_id, holder, last

    async def release(self) -> None:
        self._locker.release_now(self._id, self._holder)

    @property
    def held_here_last(self) -> bool:
        return self._last


class MemoryLocker(Locker):
    """``remember``: how many released IDs to keep for ``held_here_last``. None by default: a
    memory locker cannot know whether other processes (an embedded app's workers) share the
    store, and a wrong True would let a store start a write from an outdated state. An
    application that serves its uploads from one process may pass ``remember=REMEMBER``. (The
    file and Redis lockers use one inside for waiting and tell continuity their own way.)"""

    def __init__(self, *, remember: int = 0) -> None:
        self._held: dict[str, _Holder] = {}
        self._remember = remember
        #: IDs whose lock this locker released (and so held last: no other process shares these
        #: locks), least recently released first
        self._released: OrderedDict[str, None] = OrderedDict()

    async def acquire(
        self,
        upload_id: str,
        on_stop_request: StopCallback,
        timeout: float,
        *,
        stop_holder: bool = True,
        on_lost: StopCallback | None = None,
    ) -> Lock:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (current := self._held.get(upload_id)) is not None:
            if stop_holder:
                current.on_stop_request()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockTimeout(upload_id)
            try:
                await asyncio.wait_for(current.released.wait(), remaining)
            except TimeoutError:
                raise LockTimeout(upload_id) from None
        holder = _Holder(on_stop_request)
        self._held[upload_id] = holder
        return _MemoryLock(self, upload_id, holder, upload_id in self._released)

    def release_now(self, upload_id: str, holder: _Holder) -> None:
        if self._held.get(upload_id) is holder:
            del self._held[upload_id]
            if self._remember and not holder.forgotten:
                self._released[upload_id] = None
                self._released.move_to_end(upload_id)
                if len(self._released) > self._remember:
                    self._released.popitem(last=False)
        holder.released.set()

    def is_held(self, upload_id: str) -> bool:
        return upload_id in self._held

    async def forget(self, upload_id: str) -> None:
        self._released.pop(upload_id, None)
        holder = self._held.get(upload_id)
        if holder is not None:  # its release must not remember the terminated upload again
            holder.forgotten = True
