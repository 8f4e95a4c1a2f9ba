"""Locks inside one process: an asyncio event per held upload."""

from __future__ import annotations

import asyncio

from pytusd.locks.base import Lock, Locker, LockTimeout, StopCallback


class _Holder:
    __slots__ = ("on_stop_request", "released")

    def __init__(self, on_stop_request: StopCallback) -> None:
        self.on_stop_request = on_stop_request
        self.released = asyncio.Event()


class _MemoryLock(Lock):
    __slots__ = ("_holder", "_id", "_locker")

    def __init__(self, locker: MemoryLocker, upload_id: str, holder: _Holder) -> None:
        self._locker, self._id, self._holder = locker, upload_id, holder

    async def release(self) -> None:
        self._locker.release_now(self._id, self._holder)


class MemoryLocker(Locker):
    def __init__(self) -> None:
        self._held: dict[str, _Holder] = {}

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
        return _MemoryLock(self, upload_id, holder)

    def release_now(self, upload_id: str, holder: _Holder) -> None:
        if self._held.get(upload_id) is holder:
            del self._held[upload_id]
        holder.released.set()

    def is_held(self, upload_id: str) -> bool:
        return upload_id in self._held
