"""Locks shared by worker processes on one machine: ``flock`` on a file per upload.

Requests in the same process meet in a :class:`MemoryLocker` first (no system call, instant stop
requests). Across processes the kernel's ``flock`` decides, and a waiter asks the holder to stop
by creating a ``.stop`` file in ``.pytusd-locks/``, which the holder's process polls for. ``flock``
locks die with their process, so a killed worker never leaves an upload locked.

Which file is locked:

- Given ``lock_target`` (the file store passes its data file of an upload), the upload's own data
  file. Nothing is created per lock, so nothing piles up and no inode is spent: on ext4 without a
  journal, every file created soon after many deletions pays to skip the deleted inodes.
- Otherwise (uploads on S3) a ``.lock`` file in ``.pytusd-locks/``, removed again by its holder.

A locked file can be unlinked (lock file released, upload terminated) or replaced (a final upload's
data renamed in) while others wait on it, so a winner checks that the path still names the file it
locked and otherwise locks again: the usual rule for ``flock`` on files that come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable

from pytusd.fdio import MISSING
from pytusd.locks.base import Lock, Locker, LockTimeout, StopCallback
from pytusd.locks.memory import MemoryLocker
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.perms import DEFAULT_DIR_PERMS, DEFAULT_FILE_PERMS, makedirs

LOCK_DIR = ".pytusd-locks"
#: Longest lock-file name before its suffix; longer ones are hashed (a name may have 255 bytes).
MAX_LOCK_NAME = 200

#: upload ID -> the file to lock, or None when the upload has none (it does not exist)
LockTarget = Callable[[str], "str | None"]


class _FileLock(Lock):
    __slots__ = ("_fd", "_inner", "_locker", "_remove", "_stop_path")

    def __init__(self, locker: FileLocker, fd: int | None, remove: str | None, stop_path: str, inner: Lock) -> None:
        self._locker, self._fd, self._remove, self._stop_path, self._inner = locker, fd, remove, stop_path, inner

    async def release(self) -> None:
        self._locker.unwatch(self._stop_path)
        if self._fd is not None:
            if self._remove is not None:  # while still held: see the module docstring
                with contextlib.suppress(*MISSING):
                    os.unlink(self._remove)
            os.close(self._fd)  # drops the flock
        await self._inner.release()


class FileLocker(Locker):
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        poll_interval: float = 0.02,
        lock_target: LockTarget | None = None,
        dir_perms: int = DEFAULT_DIR_PERMS,
        file_perms: int = DEFAULT_FILE_PERMS,
    ) -> None:
        self.directory = os.path.join(os.path.abspath(os.fspath(directory)), LOCK_DIR)
        self.dir_perms = dir_perms
        self.file_perms = file_perms
        self.poll_interval = poll_interval
        self.lock_target = lock_target
        self._local = MemoryLocker()
        #: stop-file path -> callback of the request in this process that holds the lock
        self._watched: dict[str, StopCallback] = {}
        self._watcher: asyncio.Task[None] | None = None

    def _paths(self, upload_id: str) -> tuple[str, str]:
        if not is_valid_upload_id(upload_id):
            raise ValueError("invalid upload id")
        # One flat directory: '/' in IDs becomes '%2F', so no lock file escapes or nests. A name
        # that would pass the file system's 255 bytes becomes a digest; '%H' cannot start an escaped
        # name ('%' is always escaped as '%25'), so a digest never collides with one.
        name = upload_id.replace("%", "%25").replace("/", "%2F")
        if len(name) > MAX_LOCK_NAME:
            name = "%H" + hashlib.sha256(upload_id.encode()).hexdigest()
        base = os.path.join(self.directory, name)
        return base + ".lock", base + ".stop"

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
        inner = await self._local.acquire(upload_id, on_stop_request, timeout, stop_holder=stop_holder)
        try:
            lock_path, stop_path = self._paths(upload_id)
            target = self.lock_target(upload_id) if self.lock_target is not None else None
            path = target or lock_path
            while True:
                fd = self._open(path, create=target is None)
                if fd is None:  # the upload has no data file: it does not exist, nothing to guard
                    return _FileLock(self, None, None, stop_path, inner)
                try:
                    await self._flock(fd, stop_path if stop_holder else None, deadline, upload_id)
                except BaseException:
                    os.close(fd)
                    raise
                if _still_names(path, fd):
                    break
                os.close(fd)  # unlinked or replaced while we waited: lock what is there now
        except BaseException:
            await inner.release()
            raise
        # A stop file now is stale or from a waiter that will re-create it: start clean.
        with contextlib.suppress(*MISSING):
            os.unlink(stop_path)
        self._watch(stop_path, on_stop_request)
        return _FileLock(self, fd, None if target else lock_path, stop_path, inner)

    def _open(self, path: str, *, create: bool) -> int | None:
        if not create:
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except MISSING:
                return None
        return self._create(path)

    def _create(self, path: str) -> int:
        """Open (creating it, and the lock directory, if need be) a file in the lock directory."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(path, flags, self.file_perms)
        except MISSING:
            makedirs(self.directory, self.dir_perms)
            return os.open(path, flags, self.file_perms)

    async def _flock(self, fd: int, stop_path: str | None, deadline: float, upload_id: str) -> None:
        loop = asyncio.get_running_loop()
        while not _try_flock(fd):
            # Ask the holder in the other process to stop; re-assert if it consumed the file.
            if stop_path is not None and not os.path.exists(stop_path):
                with contextlib.suppress(OSError):  # unasked, the holder still times the waiter out
                    os.close(self._create(stop_path))
            if loop.time() >= deadline:
                if stop_path is not None:
                    with contextlib.suppress(*MISSING):
                        os.unlink(stop_path)
                raise LockTimeout(upload_id)
            await asyncio.sleep(self.poll_interval)

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


def _still_names(path: str, fd: int) -> bool:
    """Does ``path`` still lead to the file open as ``fd``?"""
    try:
        st = os.stat(path)
    except MISSING:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
