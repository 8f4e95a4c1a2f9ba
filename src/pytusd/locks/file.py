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

Continuity (:attr:`~pytusd.locks.base.Lock.held_here_last`, lock-file mode only: the S3 store's).
Every locker on the directory *joins* it before it takes its first upload lock: it holds ``LOCK_SH``
on ``.members`` for as long as it lives, then bumps the join counter in ``.joined``. A locker is
*alone* when no other open file description holds a lock on ``.members``. At each release it
records whether it was alone, and if so the counter; at the next take of that upload it must be
alone again with the counter unchanged. Any other locker that held the lock in between was either a
member at our release (we were not alone), or joined later (the counter moved): so both checks
passing means no one else held it. Data-file mode (the file store) answers False: that store reads
its state anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable

from pytusd.fdio import MISSING
from pytusd.locks.base import Lock, Locker, LockTimeout, StopCallback
from pytusd.locks.memory import REMEMBER, MemoryLocker
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.perms import DEFAULT_DIR_PERMS, DEFAULT_FILE_PERMS, makedirs

LOCK_DIR = ".pytusd-locks"
#: Longest lock-file name before its suffix; longer ones are hashed (a name may have 255 bytes).
MAX_LOCK_NAME = 200
#: In the lock directory: held ``LOCK_SH`` by every locker that joined, for its lifetime.
MEMBERS = ".members"
#: In the lock directory: how many times a locker joined (8 bytes, little-endian); also the mutex
#: under which a locker checks whether it is alone (see ``FileLocker._alone_counter``).
JOINED = ".joined"
#: Tries (a millisecond apart) at the flocks of joining, which others hold for microseconds at a time.
JOIN_TRIES = 100
#: Seconds before a locker that failed to join tries again (each try may wait JOIN_TRIES ms).
JOIN_RETRY = 10.0

#: upload ID -> the file to lock, or None when the upload has none (it does not exist)
LockTarget = Callable[[str], "str | None"]


class _FileLock(Lock):
    __slots__ = ("_fd", "_id", "_inner", "_last", "_locker", "_remove", "_stop_path")

    def __init__(
        self,
        locker: FileLocker,
        upload_id: str,
        fd: int | None,
        remove: str | None,
        stop_path: str,
        inner: Lock,
        last: bool = False,
    ) -> None:
        self._locker, self._id, self._fd, self._remove = locker, upload_id, fd, remove
        self._stop_path, self._inner, self._last = stop_path, inner, last

    @property
    def held_here_last(self) -> bool:
        return self._last

    async def release(self) -> None:
        self._locker.unwatch(self._stop_path)
        if self._fd is not None:
            if self._remove is not None:  # while still held: see the module docstring
                self._locker.note_release(self._id)
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
        self._local = MemoryLocker(remember=0)
        #: stop-file path -> callback of the request in this process that holds the lock
        self._watched: dict[str, StopCallback] = {}
        self._watcher: asyncio.Task[None] | None = None
        # Continuity (see the module docstring): None while not joined.
        self._members_fd: int | None = None
        self._joined_fd: int | None = None
        #: the process that joined (a fork must not use the parent's membership)
        self._pid = 0
        self._join_failed_at = float("-inf")
        #: (device, inode) of .members and .joined as we opened them
        self._identity: list[tuple[int, int]] = []
        #: IDs whose lock we last released alone -> the join counter then (least recent first)
        self._alone: OrderedDict[str, int] = OrderedDict()
        #: IDs held now and terminated (``forget``): their release records nothing
        self._forgotten: set[str] = set()

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
            if self.lock_target is None:
                await self._join()
            while True:
                fd = self._open(path, create=target is None)
                if fd is None:  # the upload has no data file: it does not exist, nothing to guard
                    return _FileLock(self, upload_id, None, None, stop_path, inner)
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
        last = False
        if target is None:
            if self._members_fd is None:
                self._bump_unjoined()
            elif (released := self._alone.get(upload_id)) is not None:
                last = self._alone_counter() == released
        return _FileLock(self, upload_id, fd, None if target else lock_path, stop_path, inner, last)

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
        self._leave()

    # -- continuity (see the module docstring) ------------------------------------------------

    async def _join(self) -> None:
        """Become a member of the lock directory, unless this locker (in this process) is one.

        Failing (an OSError, or the flocks staying busy), the locker goes on unjoined: its locks
        answer False, and it bumps the counter while holding each lock (``_bump_unjoined``).
        """
        if self._members_fd is not None:
            if self._pid == os.getpid():
                return
            self._leave()  # inherited through fork: the parent's file descriptions, not ours
        if time.monotonic() - self._join_failed_at < JOIN_RETRY:
            return
        members = joined = None
        try:
            members = self._create(os.path.join(self.directory, MEMBERS))
            # Member first, counter second. A locker whose bump comes after our release check moves
            # the counter before it can take the lock, so our take sees that; one whose bump came
            # before was a member already at our release check (we were not alone). Bumping first
            # would leave a gap: a locker that bumped before our check but took LOCK_SH after it is
            # neither seen nor counted (and our take after it has gone would answer True).
            await _flock_soon(members, fcntl.LOCK_SH)
            joined = self._create(os.path.join(self.directory, JOINED))
            await _flock_soon(joined, fcntl.LOCK_EX)
            try:
                _write_counter(joined, _read_counter(joined) + 1)
            finally:
                fcntl.flock(joined, fcntl.LOCK_UN)
            identity = [_identity(os.fstat(fd)) for fd in (members, joined)]
        except BaseException as exc:
            for fd in (members, joined):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if isinstance(exc, OSError):
                self._join_failed_at = time.monotonic()
                return
            raise
        if self._members_fd is not None and self._pid == os.getpid():
            # Another request of ours joined meanwhile: keep one membership (our bump is harmless).
            os.close(members)
            os.close(joined)
            return
        self._members_fd, self._joined_fd, self._pid, self._identity = members, joined, os.getpid(), identity

    def _leave(self) -> None:
        """No longer a member (closed, forked, or the membership broke): forget what it vouched for."""
        for fd in (self._members_fd, self._joined_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._members_fd = self._joined_fd = None
        self._alone.clear()

    def _bump_unjoined(self) -> None:
        """A locker that could not join, while it holds an upload lock: move the counter, so the
        members' next takes of this lock answer False (best effort; this is the failure path)."""
        try:
            fd = self._create(os.path.join(self.directory, JOINED))
        except OSError:
            return
        try:
            for _ in range(20):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    time.sleep(0.0005)
                    continue
                _write_counter(fd, _read_counter(fd) + 1)
                return
        except OSError:
            return
        finally:
            os.close(fd)  # drops the flock

    def _alone_counter(self) -> int | None:
        """The join counter if no other locker is a member now, else (or in any doubt) None.

        Alone: our ``LOCK_SH`` on ``.members`` converts to ``LOCK_EX | LOCK_NB``. Linux converts by
        dropping the old lock first (and a refused conversion leaves none), so during a check we
        are briefly no member; checks therefore run under ``LOCK_EX`` on ``.joined``, so no other
        check (nor a join's bump) sees that gap. Taking ``LOCK_SH`` back cannot block: others only
        ever take SH, but for a check's EX, and none checks now (a joiner that meets our EX tries
        again a moment later).
        """
        members, joined = self._members_fd, self._joined_fd
        if members is None or joined is None or self._pid != os.getpid():
            return None
        try:
            fcntl.flock(joined, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # busy: another locker checks or joins, so we are not alone anyway
            return None
        broken = False
        answer = None
        try:
            try:
                fcntl.flock(members, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            try:
                fcntl.flock(members, fcntl.LOCK_SH)
            except OSError:
                broken = True  # maybe no longer a member: leave, and join again before the next lock
            else:
                answer = _read_counter(joined) if alone else None
            # Files deleted or replaced (the directory removed under us): newcomers would meet in
            # others we cannot see. Two stats; then leave, and join the new ones at the next take.
            paths = (os.path.join(self.directory, MEMBERS), os.path.join(self.directory, JOINED))
            if answer is not None and [_identity(os.stat(path)) for path in paths] != self._identity:
                broken = True
        except OSError:
            broken = True
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(joined, fcntl.LOCK_UN)
        if broken:
            self._leave()
            return None
        return answer

    def note_release(self, upload_id: str) -> None:
        """At the release of ``upload_id``'s lock (the flock still held): record whether we were alone."""
        if upload_id in self._forgotten:
            self._forgotten.discard(upload_id)
            self._alone.pop(upload_id, None)
        elif (counter := self._alone_counter()) is not None:
            self._alone[upload_id] = counter
            self._alone.move_to_end(upload_id)
            if len(self._alone) > REMEMBER:
                self._alone.popitem(last=False)
        else:
            self._alone.pop(upload_id, None)

    async def forget(self, upload_id: str) -> None:
        self._alone.pop(upload_id, None)
        if self.lock_target is None and self._local.is_held(upload_id):
            self._forgotten.add(upload_id)


def _still_names(path: str, fd: int) -> bool:
    """Does ``path`` still lead to the file open as ``fd``?"""
    try:
        st = os.stat(path)
    except MISSING:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


async def _flock_soon(fd: int, operation: int) -> None:
    """``flock`` that others hold only for microseconds: a few tries, never blocking the loop."""
    for _ in range(JOIN_TRIES):
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            await asyncio.sleep(0.001)
        else:
            return
    raise BlockingIOError("the lock directory's membership files stay busy")


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _read_counter(fd: int) -> int:
    data = os.pread(fd, 8, 0)
    return int.from_bytes(data, "little") if len(data) == 8 else 0


def _write_counter(fd: int, value: int) -> None:
    if os.pwrite(fd, (value % 2**64).to_bytes(8, "little"), 0) != 8:
        raise OSError("short write of the join counter")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
