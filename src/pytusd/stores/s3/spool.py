"""Local files on the way to S3: the spool of one part, and the cache of incomplete parts.

S3 wants a part's length and Content-MD5 before its body, and a request body arrives in pieces
of any size, so bytes are spooled to a temporary file (never held in memory) until they make a
part. The tail cache keeps the incomplete part this process wrote last, so that the next PATCH of
the same upload need not download it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pytusd.stores.base import StoreError

_COPY_BLOCK = 1024 * 1024


class Spool:
    """The bytes of one part on their way to S3: a temporary file and the MD5 S3 will verify.

    Parts are spooled to disk, never held in memory, so a request costs at most a few part files
    on disk and one read buffer in RAM, whatever the part size.
    """

    __slots__ = ("file", "md5", "path", "size")

    def __init__(self, path: str, file: Any, size: int, md5: Any) -> None:
        self.path, self.file, self.size, self.md5 = path, file, size, md5

    @classmethod
    def new(cls, directory: str) -> Spool:
        fd, path = tempfile.mkstemp(dir=directory, suffix=".spool")
        return cls(path, os.fdopen(fd, "w+b"), 0, hashlib.md5(usedforsecurity=False))

    @classmethod
    def reopen(cls, path: str, size: int, md5: Any) -> Spool:
        file = open(path, "r+b")  # noqa: SIM115 - owned by the spool, closed by discard()
        file.seek(size)
        return cls(path, file, size, md5)

    def write(self, data: bytes | memoryview) -> None:
        self.file.write(data)
        self.md5.update(data)
        self.size += len(data)

    def content_md5(self) -> str:
        return base64.b64encode(self.md5.digest()).decode()

    def rewind(self) -> Any:
        self.file.flush()
        self.file.seek(0)
        return self.file

    def detach(self) -> None:
        """Close the file but keep it on disk (it moves into the tail cache)."""
        self.file.close()

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


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


async def snapshot_of(spool: Spool, size: int, directory: str) -> Spool:
    """A new spool in ``directory`` with the first ``size`` bytes of ``spool`` (copied in a thread)."""
    spool.file.flush()
    md5 = spool.md5.copy()
    copy = Spool.new(directory)
    try:
        await asyncio.to_thread(_copy_prefix, spool.path, copy.file, size)
    except BaseException:
        copy.discard()
        raise
    copy.size, copy.md5 = size, md5
    return copy


def _copy_prefix(path: str, target: Any, size: int) -> None:
    with open(path, "rb") as source:
        left = size
        while left:
            block = source.read(min(_COPY_BLOCK, left))
            if not block:
                raise StoreError("spool file shorter than expected")
            target.write(block)
            left -= len(block)
    target.flush()
