"""Local files on the way to S3: the spool of one part, and the cache of incomplete parts.

A request body arrives in pieces of any size, and S3 wants each part's length before its body,
so bytes are spooled to a temporary file (never held in memory). An upload may read a spool
while it still grows (:meth:`Spool.stream`): a part whose length is known from the start goes
up while its bytes arrive, and a part that waited for a free upload slot goes up from the file.
The tail cache keeps the incomplete part this process wrote last, so that the next PATCH of the
same upload need not download it again.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pytusd.stores.base import StoreError

#: Bytes per read when a spool goes up (aiohttp's own default block for files).
READ_BLOCK = 256 * 1024


_T = TypeVar("_T")
#: Bytes given to the hashing thread and not hashed yet, all spools together; beyond this, a
#: writer waits for it (:func:`catch_up_hashing`), so a fast client never piles up unhashed chunks
#: in memory.
HASH_BACKLOG = 32 * 1024 * 1024
_hasher_lock = threading.Lock()
_hasher_pool: concurrent.futures.ThreadPoolExecutor | None = None
_backlog = 0


def _hash_in_order(job: Callable[[], _T], size: int = 0) -> concurrent.futures.Future[_T]:
    """Run ``job`` (hashing ``size`` bytes) on the one hashing thread, after every job given before it.

    MD5 costs about 1.6 ms per MiB; in the event loop that delays the very part uploads it is
    for. hashlib releases the GIL on large updates, so on a thread of its own it runs beside
    the loop. One thread, first in first out: a spool's updates apply in order, and a digest
    asked for after them sees exactly the bytes written before it was asked.
    """
    global _hasher_pool, _backlog

    def counted() -> _T:
        global _backlog
        try:
            return job()
        finally:
            with _hasher_lock:
                _backlog -= size

    with _hasher_lock:
        if _hasher_pool is None:
            _hasher_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pytusd-md5")
        _backlog += size
        return _hasher_pool.submit(counted)


async def catch_up_hashing() -> None:
    """If the hashing thread is far behind (see :data:`HASH_BACKLOG`), wait until it has hashed
    everything given to it so far."""
    if _backlog > HASH_BACKLOG:
        await asyncio.wrap_future(_hash_in_order(lambda: None))


class SpoolCut(StoreError):
    """A spool ended before the length an upload of it was started with (the body ended early)."""


class Spool:
    """The bytes of one part (or of the incomplete part) on their way to S3.

    A temporary file written at its end; with ``hashed``, the MD5 S3 can verify is computed as
    the bytes pass. :meth:`close_input` says no more bytes will come. Readers (:meth:`stream`)
    may run while it grows; :meth:`discard` deletes the file once the last reader is done.
    """

    __slots__ = ("_grown", "closed", "doomed", "fd", "md5", "path", "readers", "sent", "size")

    def __init__(self, path: str, fd: int, size: int, md5: Any) -> None:
        self.path, self.fd, self.size, self.md5 = path, fd, size, md5
        self.closed = False
        #: The most bytes an upload has taken from the file (see ChunkWriter.discard).
        self.sent = 0
        self.doomed = False
        self.readers = 0
        self._grown: asyncio.Event | None = None

    @classmethod
    def new(cls, directory: str, *, hashed: bool = True) -> Spool:
        fd, path = tempfile.mkstemp(dir=directory, suffix=".spool")
        return cls(path, fd, 0, hashlib.md5(usedforsecurity=False) if hashed else None)

    @classmethod
    def reopen(cls, path: str, size: int, md5: Any) -> Spool:
        return cls(path, os.open(path, os.O_RDWR | os.O_CLOEXEC), size, md5)

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (which must not change afterwards: it is hashed on another thread)."""
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, self.size)
            if self.md5 is not None:
                _hash_in_order(functools.partial(self.md5.update, view[:written]), written)
            self.size += written
            view = view[written:]
        if self._grown is not None:
            self._grown.set()

    def grew(self, count: int) -> None:
        """``count`` bytes were written at the end of the file by someone else (the serving
        layer's splice): count them, and hash them (read back: they never passed through here)."""
        if self.md5 is not None:
            # By path, not by descriptor: the spool may be discarded (its descriptor closed, the
            # number reused) before the hashing thread gets to these bytes, and a descriptor held
            # per waiting job could run out.
            _hash_in_order(functools.partial(_hash_file, self.md5, self.path, self.size, count), count)
        self.size += count
        if self._grown is not None:
            self._grown.set()

    def close_input(self) -> None:
        """No more bytes will come: readers waiting for more end (or fail, if they wanted more)."""
        self.closed = True
        if self._grown is not None:
            self._grown.set()

    async def content_md5(self) -> str | None:
        """The base64 MD5 of the bytes written so far, for Content-MD5 (None without hashing)."""
        md5 = self.md5
        if md5 is None:
            return None
        return await asyncio.wrap_future(_hash_in_order(lambda: base64.b64encode(md5.copy().digest()).decode()))

    async def md5_hex(self) -> str | None:
        md5 = self.md5
        if md5 is None:
            return None
        return await asyncio.wrap_future(_hash_in_order(lambda: str(md5.copy().hexdigest())))

    def stream(self, length: int) -> SpoolStream:
        """The first ``length`` bytes, readable (again, for a retry) while the spool still grows."""
        return SpoolStream(self, length)

    async def _read(self, length: int) -> AsyncIterator[bytes]:
        self.readers += 1
        try:
            position = 0
            while position < length:
                if self.fd < 0:
                    raise SpoolCut("spool discarded while being read")
                if self.size > position:
                    block = os.pread(self.fd, min(READ_BLOCK, length - position, self.size - position), position)
                    if not block:
                        raise StoreError("spool file shorter than expected")
                    position += len(block)
                    self.sent = max(self.sent, position)
                    yield block
                    continue
                if self.closed:
                    raise SpoolCut(f"spool ended at {self.size} of {length} bytes")
                if self._grown is None:
                    self._grown = asyncio.Event()
                self._grown.clear()
                await self._grown.wait()
        finally:
            self.readers -= 1
            if self.doomed and self.readers == 0:
                self._remove()

    def detach(self) -> None:
        """Close the file but keep it on disk (it moves into the tail cache)."""
        self.close_input()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Delete the file (once no upload reads it any more)."""
        self.close_input()
        self.doomed = True
        if self.readers == 0:
            self._remove()

    def _remove(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        unlink(self.path)


def _hash_file(md5: Any, path: str, start: int, count: int) -> None:
    """Hash ``count`` bytes of the file at ``path`` from ``start`` (gone: it was discarded)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        done = 0
        while done < count:
            block = os.pread(fd, min(READ_BLOCK, count - done), start + done)
            if not block:
                raise StoreError("spool file shorter than written")
            md5.update(block)
            done += len(block)
    finally:
        os.close(fd)


class SpoolStream:
    """A request body for aiobotocore: the first ``length`` bytes of a (growing) spool.

    aiohttp sends any async iterable; botocore wants a ``read`` attribute on a body and rewinds
    it with ``seek`` for a retry. Every iteration starts at the first byte, so a retried request
    sends the part whole again from the file.
    """

    __slots__ = ("length", "spool")

    def __init__(self, spool: Spool, length: int) -> None:
        self.spool, self.length = spool, length

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.spool._read(self.length)

    def read(self, size: int = -1) -> bytes:
        raise OSError("a spool stream is read asynchronously")  # botocore only checks it exists

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0  # the next iteration starts at the first byte anyway

    def tell(self) -> int:
        return 0


@dataclass(slots=True)
class CachedTail:
    etag: str
    path: str
    size: int
    md5: Any


class TailCache:
    """Incomplete parts this process wrote last, so the next PATCH need not download them.

    Only an optimization: an entry is used only if its ETag is the one S3 reports for the
    incomplete-part object right now (under the upload's lock), so another instance writing the
    upload in between simply makes it stale. Bounded in bytes; the oldest entries go first.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, CachedTail] = OrderedDict()
        self._bytes = 0

    def take(self, upload_id: str, etag: str) -> CachedTail | None:
        entry = self._entries.pop(upload_id, None)
        if entry is None:
            return None
        self._bytes -= entry.size
        if entry.etag != etag or not etag:
            unlink(entry.path)
            return None
        return entry

    def keep(self, upload_id: str, spool: Spool, etag: str) -> None:
        """Keep the bytes of ``spool`` (all of them: it must not be read or written any more)."""
        self.drop(upload_id)
        spool.detach()
        if spool.size > self.limit:
            unlink(spool.path)
            return
        self._entries[upload_id] = CachedTail(etag, spool.path, spool.size, spool.md5)
        self._bytes += spool.size
        while self._bytes > self.limit and self._entries:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.size
            unlink(old.path)

    def drop(self, upload_id: str) -> None:
        entry = self._entries.pop(upload_id, None)
        if entry is not None:
            self._bytes -= entry.size
            unlink(entry.path)

    def clear(self) -> None:
        for upload_id in list(self._entries):
            self.drop(upload_id)


def unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
