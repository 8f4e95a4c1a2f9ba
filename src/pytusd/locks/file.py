"""Locks shared by worker processes on one machine: ``flock`` on a lock file per upload.

Requests in the same process meet in a :class:`MemoryLocker` first (no system call, instant stop
requests). Across processes the kernel's ``flock`` decides, and a waiter asks the holder to stop
by creating a ``.stop`` file beside the lock, which the holder's process polls for. ``flock``
locks die with their process, so a killed worker never leaves an upload locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os

from pytusd.locks.base import Lock, Locker, LockTimeout, StopCallback
from pytusd.locks.memory import MemoryLocker
from pytusd.protocol.urls import is_valid_upload_id

LOCK_DIR = ".pytusd-locks"


class _FileLock(Lock):
    __slots__ = ("_fd", "_inner", "_locker", "_stop_path")

    def __init__(self, locker: FileLocker, fd: int, stop_path: str, inner: Lock) -> None:
        self._locker, self._fd, self._stop_path, self._inner = locker, fd, stop_path, inner

    async def release(self) -> None:
        self._locker.unwatch(self._stop_path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._stop_path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        await self._inner.release()


class FileLocker(Locker):
    def __init__(self, directory: str | os.PathLike[str], *, poll_interval: float = 0.02) -> None:
        self.directory = os.path.join(os.path.abspath(os.fspath(directory)), LOCK_DIR)
        self.poll_interval = poll_interval
        self._local = MemoryLocker()
        #: stop-file path -> callback of the request in this process that holds the lock
        self._watched: dict[str, StopCallback] = {}
        self._watcher: asyncio.Task[None] | None = None

    def _paths(self, upload_id: str) -> tuple[str, str]:
        if not is_valid_upload_id(upload_id):
            raise ValueError("invalid upload id")
        # One flat directory: '/' in IDs becomes '%2F', so no lock file escapes or nests.
        name = upload_id.replace("%", "%25").replace("/", "%2F")
        base = os.path.join(self.directory, name)
        return base + ".lock", base + ".stop"

    async def acquire(self, upload_id: str, on_stop_request: StopCallback, timeout: float) -> Lock:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        inner = await self._local.acquire(upload_id, on_stop_request, timeout)
        try:
            lock_path, stop_path = self._paths(upload_id)
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                os.makedirs(self.directory, exist_ok=True)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                while not _try_flock(fd):
                    # Ask the holder in the other process to stop; re-assert if it consumed the file.
                    if not os.path.exists(stop_path):
                        with contextlib.suppress(OSError):
                            os.close(os.open(stop_path, os.O_WRONLY | os.O_CREAT, 0o644))
                    if loop.time() >= deadline:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(stop_path)
                        raise LockTimeout(upload_id)
                    await asyncio.sleep(self.poll_interval)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            await inner.release()
            raise
        # A stop file now is stale or from a waiter that will re-create it: start clean.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stop_path)
        self._watch(stop_path, on_stop_request)
        return _FileLock(self, fd, stop_path, inner)

    async def forget(self, upload_id: str) -> None:
        """Remove the lock file of a terminated upload, so lock files do not pile up.

        A request that opened the old file meanwhile locks a file nobody else will lock; it finds
        the upload gone and answers 404 either way.
        """
        lock_path, _ = self._paths(upload_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)

    def _watch(self, stop_path: str, callback: StopCallback) -> None:
        self._watched[stop_path] = callback
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_loop())

    def unwatch(self, stop_path: str) -> None:
        self._watched.pop(stop_path, None)

    async def _watch_loop(self) -> None:
        """Poll the stop files of the locks this process holds (cheap: one stat each)."""
        interval = max(self.poll_interval * 5, 0.05)
        while self._watched:
            await asyncio.sleep(interval)
            for stop_path, callback in list(self._watched.items()):
                if os.path.exists(stop_path):
                    callback()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
