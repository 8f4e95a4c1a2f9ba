"""Uploads in an S3 bucket (AWS or any S3-compatible service), after tusd's s3store.

Objects per upload ``<id>`` (see docs/s3.md for the whole story):

``<object-prefix><id>``
    One S3 multipart upload while the tus upload is in progress; the finished object once it is
    complete (CompleteMultipartUpload). A 0-byte upload is a plain empty object.
``<info-prefix><id>.info``
    tusd's ``.info`` JSON; ``Storage`` names the bucket, the key and the multipart ``UploadId``.
    It is the upload's existence: created last, deleted first.
``<info-prefix><id>.part``
    The *incomplete part*: bytes that do not (yet) make a part, plus, in its metadata, how many
    parts of the multipart upload are committed (``x-amz-meta-tus-parts``). Once the upload is
    complete, an empty marker (``x-amz-meta-tus-complete``) instead: see below why it stays.
``<info-prefix><id>.finals/<final-id>``
    For a partial upload, one empty object per final upload waiting for it. A final is added
    without the partial's lock, and S3 has no atomic append: one object each is the append.

Nothing lives only in memory: the offset is recomputed from S3 on every :meth:`get_info`, as
the sizes of the committed parts (ListParts) plus the size of the incomplete part, or the size of
the finished object. A restarted server, or another instance, sees exactly what this one did.

**Commit point.** Parts of a request are uploaded while its body still arrives, but they count
only once they are *committed*: by writing the incomplete-part object with the new part count
(one PutObject, atomic) or by completing the multipart upload. Until then they are invisible
to :meth:`get_info`, and the previous incomplete part still counts. That gives, without a second
copy of any data:

* every byte acknowledged to a client is in a committed part or the incomplete part;
* a crash or an S3 error in the middle of a request never leaves a half-counted state: uploaded
  but uncommitted parts are overwritten by the next request, or left out at completion;
* an ordinary request also commits while its body arrives: its parts as they finish, and the
  bytes spooled for the next part whenever the body pauses (so HEAD, IETF progress responses and
  a crash see what reached the server, as with a file store), and once more at its end;
* ``all_or_nothing`` (a chunk with a checksum) costs nothing extra: it commits only at its end,
  so a chunk that fails is never counted, however many of its parts already went up.

A reader running beside a writer (HEAD needs no lock) reads the info, the incomplete part and
the finished object at once, then the part list; whatever order S3 answers in, it sees a state
the upload really was in: part numbers up to the committed count are never rewritten, and
completing an upload replaces the incomplete part by a marker rather than deleting it (a missing
incomplete part beside a missing object could otherwise be taken for a fresh upload).

Limits of S3 this store works within (the arithmetic is in :mod:`pytusd.stores.s3.parts`): parts
of at least 5 MiB except the last, at most 5 GiB, at most 10,000 of them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from pytusd.info import UploadInfo
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.base import DataStore, StoreError, UploadExists, UploadNotFound, UploadTooLarge
from pytusd.stores.s3.aws import ClientSettings, S3Client
from pytusd.stores.s3.client import ObjectHead, ObjectStorage, Part, S3Error
from pytusd.stores.s3.parts import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    MiB,
    PartLimitError,
    part_size,
    plan_concatenation,
    tail_becomes_part,
)

logger = logging.getLogger("pytusd.s3")

INFO_SUFFIX = ".info"
PART_SUFFIX = ".part"
#: ``<info-prefix><partial>.finals/<final>``: one empty object per final waiting for a partial.
FINALS_SUFFIX = ".finals/"
#: An ID with a segment ending like this could collide with another upload's keys.
RESERVED_SUFFIXES = (INFO_SUFFIX, PART_SUFFIX, FINALS_SUFFIX[:-1])

#: Metadata of the incomplete-part object (S3 returns user metadata names in lower case).
META_PARTS = "tus-parts"  # how many parts of the multipart upload are committed
META_MULTIPART = "tus-multipart"  # the multipart upload it belongs to (guards against stale objects)
META_WRITTEN = "tus-written"  # Unix time of the commit, sub-second (LastModified has whole seconds)
META_COMPLETE = "tus-complete"  # the marker that replaces the incomplete part of a finished upload

#: Keys of UploadInfo.storage that this store owns.
STORAGE_TYPE = "s3store"
STORAGE_MULTIPART = "MultipartUploadId"
_OWN_STORAGE_KEYS = ("Type", "Bucket", "Key", "InfoKey", "PartKey", STORAGE_MULTIPART)

#: While a body arrives, the bytes spooled for the next part are committed at most this often...
COMMIT_EVERY = 0.2
#: ...as long as the spool is this small, else only when the body pauses (for COMMIT_EVERY)...
EAGER_COMMIT_LIMIT = 1024 * 1024
#: ...and as long as all such commits of the request re-upload at most twice what it received,
#: plus this much (see _ChunkWriter).
COMMIT_SLACK = 256 * 1024

_EMPTY_MD5 = base64.b64encode(hashlib.md5(b"", usedforsecurity=False).digest()).decode()
_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")
_COPY_BLOCK = 1024 * 1024


class UnfinishedPartsUnreadable(StoreError):
    """:meth:`S3Store.read` of bytes that sit in parts of an unfinished multipart upload.

    S3 has no API to read the parts of a multipart upload in progress (GetObject sees only
    finished objects), so of an unfinished upload only the bytes in the incomplete part can be
    read; the whole upload can once it is complete.
    """


class _Spool:
    """The bytes of one part on their way to S3: a temporary file and the MD5 S3 will verify.

    Parts are spooled to disk, never held in memory, so a request costs at most a few part files
    on disk and one read buffer in RAM, whatever the part size.
    """

    __slots__ = ("file", "md5", "path", "size")

    def __init__(self, path: str, file: Any, size: int, md5: Any) -> None:
        self.path, self.file, self.size, self.md5 = path, file, size, md5

    @classmethod
    def new(cls, directory: str) -> _Spool:
        fd, path = tempfile.mkstemp(dir=directory, suffix=".spool")
        return cls(path, os.fdopen(fd, "w+b"), 0, hashlib.md5(usedforsecurity=False))

    @classmethod
    def reopen(cls, path: str, size: int, md5: Any) -> _Spool:
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
class _CachedTail:
    etag: str
    path: str
    size: int
    md5: Any


class _TailCache:
    """Incomplete parts this process wrote last, so the next PATCH need not download them.

    Only an optimization: an entry is used only if its ETag is the one S3 reports for the
    incomplete-part object right now (under the upload's lock), so another instance writing the
    upload in between simply makes it stale. Bounded in bytes; the oldest entries go first.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, _CachedTail] = OrderedDict()
        self._bytes = 0

    def take(self, upload_id: str, etag: str) -> _CachedTail | None:
        entry = self._entries.pop(upload_id, None)
        if entry is None:
            return None
        self._bytes -= entry.size
        if entry.etag != etag or not etag:
            _unlink(entry.path)
            return None
        return entry

    def keep(self, upload_id: str, spool: _Spool, etag: str) -> None:
        self.drop(upload_id)
        spool.detach()
        if spool.size > self.limit:
            _unlink(spool.path)
            return
        self._entries[upload_id] = _CachedTail(etag, spool.path, spool.size, spool.md5)
        self._bytes += spool.size
        while self._bytes > self.limit and self._entries:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.size
            _unlink(old.path)

    def drop(self, upload_id: str) -> None:
        entry = self._entries.pop(upload_id, None)
        if entry is not None:
            self._bytes -= entry.size
            _unlink(entry.path)

    def clear(self) -> None:
        for upload_id in list(self._entries):
            self.drop(upload_id)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(slots=True)
class _State:
    """An upload as S3 holds it right now."""

    info: UploadInfo
    multipart: str
    #: The finished object, once the upload is complete.
    completed: ObjectHead | None
    #: Committed parts, numbered 1..len(parts).
    parts: list[Part]
    #: The incomplete part, if one counts.
    tail: ObjectHead | None

    @property
    def stored(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def offset(self) -> int:
        if self.completed is not None:
            return self.completed.size
        return self.stored + (self.tail.size if self.tail is not None else 0)

    @property
    def full(self) -> bool:
        """Every byte is there but the multipart upload is not completed yet."""
        return self.completed is None and self.info.size is not None and self.offset == self.info.size


class S3Store(DataStore):
    """tus uploads as S3 multipart uploads; see the module documentation for the layout."""

    features = frozenset({"termination", "concatenation", "creation-defer-length", "download"})

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        object_prefix: str = "",
        info_prefix: str | None = None,
        part_size: int = 50 * MiB,
        max_concurrent_parts: int = 10,
        addressing: str = "auto",
        temp_dir: str | None = None,
        tail_cache_bytes: int = 256 * MiB,
        client: ObjectStorage | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket is required")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"S3 part size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        if max_concurrent_parts < 1:
            raise ValueError("at least one concurrent part upload is needed")
        if addressing not in ("auto", "path", "virtual"):
            raise ValueError("S3 addressing must be auto, path or virtual")
        self.bucket = bucket
        self.object_prefix = _as_prefix(object_prefix)
        self.info_prefix = _as_prefix(object_prefix if info_prefix is None else info_prefix)
        self.preferred_part_size = part_size
        self.max_concurrent_parts = max_concurrent_parts
        settings = ClientSettings(
            bucket=bucket,
            endpoint_url=endpoint_url or None,
            region=region or None,
            addressing=addressing,
            # Parts in flight plus the small requests (info, heads, lists) of other uploads.
            max_connections=max_concurrent_parts + 32,
        )
        self.client: ObjectStorage = client or S3Client(settings)
        self._temp_parent = temp_dir
        self._temp: str | None = None
        self._semaphore = asyncio.Semaphore(max_concurrent_parts)
        self._cache = _TailCache(tail_cache_bytes)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._temp = tempfile.mkdtemp(prefix="pytusd-s3-", dir=self._temp_parent)
        await self.client.open()
        try:
            await self.client.check_bucket()
        except S3Error as exc:
            await self.close()
            raise StoreError(f"cannot use S3 bucket {self.bucket!r}: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()
        self._cache.clear()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    @property
    def _temp_dir(self) -> str:
        if self._temp is None:
            raise StoreError("S3 store is not started")
        return self._temp

    # -- keys -----------------------------------------------------------------------------------

    def object_key(self, upload_id: str) -> str:
        """Key of the upload's data; refuses IDs that would collide with another's metadata."""
        if not _acceptable_id(upload_id):
            raise UploadNotFound(upload_id)
        return self.object_prefix + upload_id

    def info_key(self, upload_id: str) -> str:
        self.object_key(upload_id)
        return self.info_prefix + upload_id + INFO_SUFFIX

    def part_key(self, upload_id: str) -> str:
        self.object_key(upload_id)
        return self.info_prefix + upload_id + PART_SUFFIX

    def finals_prefix(self, upload_id: str) -> str:
        self.object_key(upload_id)
        return self.info_prefix + upload_id + FINALS_SUFFIX

    # -- info -----------------------------------------------------------------------------------

    async def _load_info(self, upload_id: str) -> UploadInfo | None:
        raw = await self.client.get_bytes(self.info_key(upload_id))
        if raw is None:
            return None
        try:
            info = UploadInfo.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"corrupt info object for upload {upload_id}") from exc
        info.id = upload_id
        return info

    async def _put_info(self, info: UploadInfo) -> None:
        data = json.dumps(info.to_json(), separators=(",", ":")).encode()
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        await self.client.put(self.info_key(info.id), data, len(data), md5, content_type="application/json")

    async def _state(self, upload_id: str, *, finals: bool = False) -> _State:
        """The upload as S3 holds it; with ``finals``, a partial's pending finals included."""
        key, part_key = self.object_key(upload_id), self.part_key(upload_id)

        info, tail, finished = await asyncio.gather(
            self._load_info(upload_id), self.client.head(part_key), self.client.head(key)
        )
        if info is None:
            raise UploadNotFound(upload_id)
        if not (finals and info.is_partial):
            return await self._data_state(info, tail, finished)
        # Listed beside the data's state, not after it: a partial's HEAD costs one request more,
        # no extra round trip.
        state, waiting = await asyncio.gather(self._data_state(info, tail, finished), self._pending_finals(upload_id))
        info.pending_finals += [f for f in waiting if f not in info.pending_finals]
        return state

    async def _pending_finals(self, upload_id: str) -> list[str]:
        prefix = self.finals_prefix(upload_id)
        return [key[len(prefix) :] async for key in self.client.list_keys(prefix)]

    async def _data_state(self, info: UploadInfo, tail: ObjectHead | None, finished: ObjectHead | None) -> _State:
        upload_id, key = info.id, self.object_key(info.id)
        multipart = info.storage.get(STORAGE_MULTIPART, "")
        if finished is not None:
            return _State(info, multipart, finished, [], None)
        if tail is not None and tail.metadata.get(META_COMPLETE):
            # Completed after the object was looked at: look again.
            return await self._finished_or_gone(info, multipart, "its object is missing")
        if tail is not None and tail.metadata.get(META_MULTIPART) != multipart:
            tail = None  # left over from something else under the same key
        count = _parse_count(tail, upload_id)
        if count == 0 or not multipart:
            return _State(info, multipart, None, [], tail)
        try:
            listed = await self.client.list_parts(key, multipart, count)
        except S3Error as exc:
            if not exc.not_found:
                raise
            return await self._finished_or_gone(info, multipart, "its multipart upload is gone")
        by_number = {p.number: p for p in listed}
        parts = [by_number.get(n) for n in range(1, count + 1)]
        if any(p is None for p in parts):
            # Completed between our reads? Else S3 lost parts that were committed.
            finished = await self.client.head(key)
            if finished is not None:
                return _State(info, multipart, finished, [], None)
            raise StoreError(f"upload {upload_id}: committed parts are missing from its multipart upload")
        return _State(info, multipart, None, [p for p in parts if p is not None], tail)

    async def _finished_or_gone(self, info: UploadInfo, multipart: str, why: str) -> _State:
        finished = await self.client.head(self.object_key(info.id))
        if finished is not None:
            return _State(info, multipart, finished, [], None)
        logger.warning("upload %s has an info object but no data (%s)", info.id, why)
        raise UploadNotFound(info.id)

    # -- contract -------------------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        key = self.object_key(info.id)
        if info.size is not None and info.size > MAX_OBJECT_SIZE:
            raise UploadTooLarge(f"S3 objects hold at most {MAX_OBJECT_SIZE} bytes")
        if await self.client.head(self.info_key(info.id)) is not None:
            raise UploadExists(info.id)
        content_type = _content_type(info)
        if info.size == 0 and not info.is_final:
            # S3 cannot complete a multipart upload without parts: a 0-byte upload is finished
            # as soon as it exists, as a plain empty object.
            await self.client.put(key, b"", 0, _EMPTY_MD5, content_type=content_type)
            multipart = ""
        else:
            multipart = await self.client.create_multipart(key, content_type)
        info.offset = 0
        info.storage = {
            **info.storage,
            "Type": STORAGE_TYPE,
            "Bucket": self.bucket,
            "Key": key,
            "InfoKey": self.info_key(info.id),
            "PartKey": self.part_key(info.id),
            STORAGE_MULTIPART: multipart,
        }
        # The info object comes last: it is what makes the upload exist.
        await self._put_info(info)
        return info

    async def get_info(self, upload_id: str) -> UploadInfo:
        state = await self._state(upload_id, finals=True)
        state.info.offset = state.offset
        return state.info

    async def update_info(self, info: UploadInfo) -> None:
        stored = await self._load_info(info.id)
        if stored is None:
            raise UploadNotFound(info.id)
        # Whatever the caller did to Storage, the keys that locate the data stay as they are.
        own = {k: stored.storage[k] for k in _OWN_STORAGE_KEYS if k in stored.storage}
        info.storage = {**info.storage, **own}
        await self._put_info(info)

    async def add_pending_final(self, partial_id: str, final_id: str) -> None:
        """Record a final waiting for a partial, without the partial's lock (see the base class).

        S3 has no atomic append, and conditional writes (If-Match) are not implemented by every
        S3-compatible service, so a read-modify-write of the info object could undo a length
        the partial's own PATCH declares at the same moment. Instead each waiting final is an
        empty object of its own: one PutObject, atomic, and the info object is not touched.
        """
        if await self.client.head(self.info_key(partial_id)) is None:
            raise UploadNotFound(partial_id)
        if not _acceptable_id(final_id):
            raise StoreError(f"invalid final upload ID {final_id!r}")
        await self.client.put(self.finals_prefix(partial_id) + final_id, b"", 0, _EMPTY_MD5)

    async def declare_length(self, upload_id: str, length: int) -> None:
        info = await self._load_info(upload_id)
        if info is None:
            raise UploadNotFound(upload_id)
        info.size = length
        await self._put_info(info)
        state = await self._state(upload_id)
        if state.full:
            # The bytes were all there before their number was known (IETF draft, or a PATCH
            # declaring the length with an empty body): finish now.
            await self._finish_from_state(state)

    async def write_chunk(
        self,
        upload_id: str,
        offset: int,
        source: AsyncIterable[bytes],
        *,
        all_or_nothing: bool = False,
    ) -> int:
        state = await self._state(upload_id)
        if state.completed is not None:
            async for chunk in source:
                if chunk:
                    raise StoreError(f"upload {upload_id} is complete; nothing can be appended")
            return 0
        if offset != state.offset:
            raise StoreError(f"upload {upload_id}: write at {offset}, but S3 holds {state.offset} bytes")
        writer = _ChunkWriter(self, state, progressive=not all_or_nothing)
        iterator = aiter(source)
        try:
            while True:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception:
                    if all_or_nothing:
                        raise
                    # The bytes that arrived before the source failed are kept (committed), and
                    # the client resumes after them.
                    await writer.commit()
                    raise
                if chunk:
                    await writer.feed(chunk)
            return await writer.commit()
        finally:
            # Whatever was not committed (a discarded chunk, a failure, a cancellation) goes.
            await writer.discard()

    def read(self, upload_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._read(upload_id, start, end)

    async def _read(self, upload_id: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        key = self.object_key(upload_id)
        try:
            chunks = await self.client.open_range(key, start, end)
        except S3Error as exc:
            if not exc.not_found:
                raise
            chunks = await self._read_unfinished(upload_id, start, end)
        try:
            async for block in chunks:
                yield block
        finally:
            await chunks.aclose()  # a client that went away must not hold an S3 connection

    async def _read_unfinished(self, upload_id: str, start: int, end: int | None) -> AsyncGenerator[bytes, None]:
        """Bytes of an upload that has no finished object (yet)."""
        state = await self._state(upload_id)
        if state.completed is None and state.full:
            # All bytes are in parts, but a crash came between storing the length and
            # completing (see declare_length): complete now.
            await self._finish_from_state(state)
            return await self.client.open_range(self.object_key(upload_id), start, end)
        if state.completed is not None:
            return await self.client.open_range(self.object_key(upload_id), start, end)
        stop = state.offset if end is None else min(end, state.offset)
        if start >= stop:
            return _nothing()
        if state.tail is not None and start >= state.stored:
            return await self.client.open_range(self.part_key(upload_id), start - state.stored, stop - state.stored)
        raise UnfinishedPartsUnreadable(
            f"upload {upload_id}: bytes {start}-{stop - 1} are in parts of an unfinished S3 multipart upload,"
            " which S3 cannot read back before the upload is complete"
        )

    async def terminate(self, upload_id: str) -> None:
        info = await self._load_info(upload_id)
        if info is None:
            raise UploadNotFound(upload_id)
        key = self.object_key(upload_id)
        # The info object first: once it is gone the upload is gone for every reader, and what
        # a crash might leave behind below is unreachable garbage, never a half-deleted upload.
        await self.client.delete(self.info_key(upload_id))
        self._cache.drop(upload_id)
        multipart = info.storage.get(STORAGE_MULTIPART, "")
        jobs = [self.client.delete(key), self.client.delete(self.part_key(upload_id))]
        if info.is_partial:
            prefix = self.finals_prefix(upload_id)
            jobs += [self.client.delete(marker) async for marker in self.client.list_keys(prefix)]
        if multipart:
            jobs.append(self.client.abort(key, multipart))
        # Every deletion is attempted, even if one fails (the first failure is then raised).
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> None:
        target = await self._state(final.id)
        if target.completed is not None:
            return
        keys: list[str] = []
        sizes: list[int] = []
        for partial in partials:
            state = await self._state(partial.id)
            if state.completed is None:
                if not state.full:
                    raise StoreError(f"partial upload {partial.id} is not complete")
                await self._finish_from_state(state)
                state = await self._state(partial.id)
            if state.completed is None:
                raise StoreError(f"partial upload {partial.id} could not be completed")
            keys.append(self.object_key(partial.id))
            sizes.append(state.completed.size)
        try:
            plan = plan_concatenation(sizes)
        except PartLimitError as exc:
            raise StoreError(str(exc)) from exc
        key = self.object_key(final.id)

        async def make(number: int, pieces: list[Any]) -> Part:
            async with self._semaphore:
                if len(pieces) == 1:
                    piece = pieces[0]
                    etag = await self.client.upload_part_copy(
                        key, target.multipart, number, keys[piece.source], piece.start, piece.end
                    )
                    return Part(number, piece.length, etag)
                # Small partials: S3 cannot append, so these few bytes come through us.
                spool = _Spool.new(self._temp_dir)
                try:
                    for piece in pieces:
                        await self._download_into(spool, keys[piece.source], piece.start, piece.end)
                    etag = await self.client.upload_part(
                        key, target.multipart, number, spool.rewind(), spool.size, spool.content_md5()
                    )
                    return Part(number, spool.size, etag)
                finally:
                    spool.discard()

        parts = await _all([make(n, pieces) for n, pieces in enumerate(plan, start=1)])
        await self._complete(target, parts)

    async def list_uploads(self) -> AsyncIterator[str]:
        async for key in self.client.list_keys(self.info_prefix):
            if not key.endswith(INFO_SUFFIX):
                continue
            upload_id = key[len(self.info_prefix) : -len(INFO_SUFFIX)]
            if _acceptable_id(upload_id):
                yield upload_id

    async def last_write_time(self, upload_id: str) -> float:
        info, tail, finished = await asyncio.gather(
            self._load_info(upload_id),
            self.client.head(self.part_key(upload_id)),
            self.client.head(self.object_key(upload_id)),
        )
        if info is None:
            raise UploadNotFound(upload_id)
        if tail is not None and tail.metadata.get(META_MULTIPART) == info.storage.get(STORAGE_MULTIPART, ""):
            with contextlib.suppress(ValueError):
                return float(tail.metadata.get(META_WRITTEN, ""))
            return tail.last_modified
        if finished is not None:
            return finished.last_modified
        return info.created_at

    # -- finishing --------------------------------------------------------------------------------

    async def _complete(self, state: _State, parts: list[Part]) -> None:
        """Turn the multipart upload into the finished object; the commit point of the last write."""
        upload_id = state.info.id
        key = self.object_key(upload_id)
        if parts:
            await self.client.complete(key, state.multipart, parts)
        else:
            await self.client.put(key, b"", 0, _EMPTY_MD5, content_type=_content_type(state.info))
            if state.multipart:
                await self.client.abort(key, state.multipart)
        self._cache.drop(upload_id)
        # Replaced, not deleted: see the module documentation.
        marker = {META_COMPLETE: "1", META_MULTIPART: state.multipart, META_WRITTEN: f"{time.time():.6f}"}
        await self.client.put(self.part_key(upload_id), b"", 0, _EMPTY_MD5, metadata=marker)

    async def _finish_from_state(self, state: _State) -> None:
        """Complete an upload whose bytes are all stored: the incomplete part becomes the last
        part by a copy inside S3 (the last part may be small)."""
        parts = list(state.parts)
        tail = state.tail
        if tail is not None and tail.size:
            number = len(parts) + 1
            key = self.object_key(state.info.id)
            async with self._semaphore:
                etag = await self.client.upload_part_copy(
                    key, state.multipart, number, self.part_key(state.info.id), 0, tail.size
                )
            parts.append(Part(number, tail.size, etag))
        await self._complete(state, parts)

    async def _load_tail(self, state: _State) -> _Spool:
        """A spool that starts with the incomplete part's bytes (from the cache, else S3)."""
        tail = state.tail
        if tail is None or tail.size == 0:
            return _Spool.new(self._temp_dir)
        cached = self._cache.take(state.info.id, tail.etag)
        if cached is not None and cached.size == tail.size:
            return _Spool.reopen(cached.path, cached.size, cached.md5)
        if cached is not None:
            _unlink(cached.path)
        spool = _Spool.new(self._temp_dir)
        try:
            await self._download_into(spool, self.part_key(state.info.id), 0, tail.size)
            if spool.size != tail.size:
                raise StoreError(f"upload {state.info.id}: incomplete part changed while being read")
        except BaseException:
            spool.discard()
            raise
        return spool

    async def _snapshot(self, spool: _Spool, size: int) -> _Spool:
        """A new spool with the first ``size`` bytes of ``spool`` (copied in a thread)."""
        spool.file.flush()
        md5 = spool.md5.copy()
        copy = _Spool.new(self._temp_dir)
        try:
            await asyncio.to_thread(_copy_prefix, spool.path, copy.file, size)
        except BaseException:
            copy.discard()
            raise
        copy.size, copy.md5 = size, md5
        return copy

    async def _download_into(self, spool: _Spool, key: str, start: int, end: int) -> None:
        chunks = await self.client.open_range(key, start, end)
        try:
            async for block in chunks:
                spool.write(block)
        finally:
            await chunks.aclose()

    async def _upload_spool(self, state: _State, number: int, spool: _Spool) -> Part:
        try:
            async with self._semaphore:
                etag = await self.client.upload_part(
                    self.object_key(state.info.id), state.multipart, number, spool.rewind(), spool.size,
                    spool.content_md5(),
                )  # fmt: skip
            return Part(number, spool.size, etag)
        finally:
            spool.discard()

    async def _commit_tail(self, state: _State, count: int, spool: _Spool | None) -> None:
        """Commit a write: the incomplete part (``spool``, or empty), with the number of committed
        parts beside it. Takes ownership of ``spool``: it moves into the tail cache or goes."""
        upload_id = state.info.id
        metadata = {META_PARTS: str(count), META_MULTIPART: state.multipart, META_WRITTEN: f"{time.time():.6f}"}
        key = self.part_key(upload_id)
        self._cache.drop(upload_id)
        if spool is None:
            await self.client.put(key, b"", 0, _EMPTY_MD5, metadata=metadata)
            return
        try:
            etag = await self.client.put(key, spool.rewind(), spool.size, spool.content_md5(), metadata=metadata)
        except BaseException:
            spool.discard()
            raise
        self._cache.keep(upload_id, spool, etag)


class _ChunkWriter:
    """One write_chunk: cuts the stream into parts, uploads them while more arrives, commits.

    At most ``max_concurrent_parts`` parts of one request are spooled or in flight at a time
    (the request's body waits for S3 beyond that), and the store-wide semaphore bounds the
    uploads of all requests together.

    ``progressive`` (every write but an all-or-nothing one) also commits while the body arrives,
    so that what reached the server is counted (and survives a crash) as it would be on a disk:

    * whenever the uploaded parts form a longer unbroken run, the incomplete part is replaced by an
      empty one counting them (the old incomplete part's bytes are inside the first of them);
    * the bytes spooled for the next part are committed as the incomplete part (a copy of the
      spool, which keeps growing) every :data:`COMMIT_EVERY` seconds while the spool is small
      (:data:`EAGER_COMMIT_LIMIT`), else when the body pauses. S3 cannot append, so each such
      commit uploads the whole spool again: a budget keeps all of them within twice the bytes
      the request received (plus :data:`COMMIT_SLACK`), so a slow or stuttering client costs at
      most that, and a fast one nothing (its parts fill before it pauses).

    All these commits and the final one go through :meth:`_advance`, one at a time and only
    forward, so the offset readers see never decreases.
    """

    def __init__(self, store: S3Store, state: _State, *, progressive: bool) -> None:
        self.store = store
        self.state = state
        self.size = state.info.size
        #: Bytes in parts, committed or uploaded by this request.
        self.stored = state.stored
        #: Parts committed or uploaded by this request (the last part number used).
        self.count = len(state.parts)
        self.received = 0
        self.spool: _Spool | None = None
        self.target = 0
        self.tail_loaded = False
        self.active: set[asyncio.Task[Part]] = set()
        self.results: dict[int, Part] = {}
        self.failure: BaseException | None = None
        #: Parts 1..done_run are in S3.
        self.done_run = len(state.parts)
        #: What S3's incomplete-part object says now: (committed parts, bytes of the incomplete part).
        self.pointer = (len(state.parts), state.tail.size if state.tail is not None else 0)
        self.pointer_lock = asyncio.Lock()
        self.progressive = progressive
        self.helpers: list[asyncio.Task[None]] = []
        self.progress: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.last_feed = self.last_commit = loop.time()
        #: Bytes uploaded again by commits of the spool (the budget's account).
        self.recommitted = 0

    async def feed(self, chunk: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.last_feed = loop.time()
        if self.progressive and not self.helpers:
            self.helpers.append(loop.create_task(self._commit_spool()))
        view = memoryview(chunk)
        while view:
            if self.spool is None:
                await self._open_spool()
            spool = self.spool
            assert spool is not None
            room = self.target - spool.size
            if room > 0:
                piece = view[:room]
                spool.write(piece)
                view = view[len(piece) :]
            if spool.size >= self.target:
                await self._submit()
        self.received += len(chunk)
        self.last_feed = loop.time()

    async def _open_spool(self) -> None:
        try:
            self.target = part_size(self.size, self.stored, self.count, self.store.preferred_part_size)
        except PartLimitError as exc:
            raise StoreError(str(exc)) from exc
        if not self.tail_loaded:
            self.tail_loaded = True
            self.spool = await self.store._load_tail(self.state)
        else:
            self.spool = _Spool.new(self.store._temp_dir)

    async def _submit(self) -> None:
        spool, self.spool = self.spool, None
        assert spool is not None
        try:
            await self._make_room()
        except BaseException:
            spool.discard()
            raise
        self.count += 1
        self.stored += spool.size
        task = asyncio.get_running_loop().create_task(self.store._upload_spool(self.state, self.count, spool))
        self.active.add(task)
        task.add_done_callback(self._part_done)

    async def _make_room(self) -> None:
        while True:
            self._raise_failure()
            if len(self.active) < self.store.max_concurrent_parts:
                return
            await asyncio.wait(set(self.active), return_when=asyncio.FIRST_COMPLETED)

    def _raise_failure(self) -> None:
        exc = self.failure
        if exc is not None:
            raise exc if isinstance(exc, StoreError) else StoreError(str(exc))

    def _part_done(self, task: asyncio.Task[Part]) -> None:
        self.active.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failure = self.failure or exc
            return
        part = task.result()
        self.results[part.number] = part
        while self.done_run + 1 in self.results:
            self.done_run += 1
        if self.progressive and not self.closing.is_set() and (self.progress is None or self.progress.done()):
            self.progress = asyncio.get_running_loop().create_task(self._commit_parts())
            self.helpers.append(self.progress)

    async def _commit_parts(self) -> None:
        while not self.closing.is_set() and self.failure is None and self.done_run > self.pointer[0]:
            try:
                await self._advance(self.done_run, None)
            except StoreError as exc:
                # Only an early commit failed: the final one decides (and reports S3's trouble).
                logger.warning("upload %s: could not commit parts so far: %s", self.state.info.id, exc)
                return

    async def _commit_spool(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), COMMIT_EVERY / 2)
                return
            spool, now = self.spool, loop.time()
            if (
                spool is None
                or now - self.last_commit < COMMIT_EVERY
                or self.done_run != self.count  # the incomplete part follows every part before it
                or self.failure is not None
                or (self.count, spool.size) <= self.pointer
                or (spool.size > EAGER_COMMIT_LIMIT and now - self.last_feed < COMMIT_EVERY)
                or self.recommitted + spool.size > 2 * self.received + COMMIT_SLACK
            ):
                continue
            size, count = spool.size, self.count
            try:
                snapshot = await self.store._snapshot(spool, size)
            except (OSError, ValueError, StoreError):
                continue  # the spool filled up and went up as a part meanwhile: nothing to do
            self.recommitted += size
            try:
                await self._advance(count, snapshot)
            except StoreError as exc:
                logger.warning("upload %s: could not commit the bytes so far: %s", self.state.info.id, exc)

    async def _advance(self, count: int, tail: _Spool | None) -> None:
        """Point S3's incomplete part at ``count`` parts and ``tail``, if that is further than it
        points now; takes ownership of ``tail``."""
        size = tail.size if tail is not None else 0
        async with self.pointer_lock:
            if (count, size) <= self.pointer:
                if tail is not None:
                    tail.discard()
                return
            await self.store._commit_tail(self.state, count, tail)
            self.pointer = (count, size)
            self.last_commit = asyncio.get_running_loop().time()

    async def _settle(self) -> None:
        """Let parts in flight finish and the early commits stop before the final commit."""
        self.closing.set()
        if self.active:
            await asyncio.wait(set(self.active))
        helpers = [t for t in self.helpers if not t.done()]
        if helpers:
            await asyncio.wait(helpers)

    async def commit(self) -> int:
        """Make everything received part of the upload; returns the bytes received."""
        store, state = self.store, self.state
        if self.received == 0:
            if state.full:
                await store._finish_from_state(state)
            return 0
        await self._settle()
        self._raise_failure()
        first = len(state.parts) + 1
        parts = list(state.parts) + [self.results[n] for n in range(first, self.count + 1)]
        spool, self.spool = self.spool, None
        if spool is not None and spool.size == 0:
            spool.discard()
            spool = None
        rest = spool.size if spool is not None else 0
        try:
            final = self.size is not None and self.stored + rest == self.size
            if spool is not None and (
                final or tail_becomes_part(rest, self.size, self.stored, self.count, store.preferred_part_size)
            ):
                last, spool = spool, None
                parts.append(await self._upload_last(last))
            if final:
                await store._complete(state, parts)
            else:
                tail, spool = spool, None
                await self._advance(len(parts), tail)  # the tail cache owns the spool now
        finally:
            if spool is not None:
                spool.discard()
        return self.received

    async def _upload_last(self, spool: _Spool) -> Part:
        self.count += 1
        self.stored += spool.size
        return await self.store._upload_spool(self.state, self.count, spool)

    async def discard(self) -> None:
        """Drop what was not committed: cancel uploads in flight, delete spool files."""
        self.closing.set()
        for task in list(self.active):
            task.cancel()
        await self._settle()
        if self.spool is not None:
            self.spool.discard()
            self.spool = None


async def _all(jobs: Sequence[Any]) -> list[Any]:
    """Run coroutines together; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _nothing() -> AsyncGenerator[bytes, None]:
    return
    yield b""  # pragma: no cover - makes this an async generator


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


def _acceptable_id(upload_id: str) -> bool:
    """A valid ID none of whose segments ends like one of the store's own keys (as FileStore)."""
    return is_valid_upload_id(upload_id) and not any(
        segment.endswith(RESERVED_SUFFIXES) for segment in upload_id.split("/")
    )


def _parse_count(tail: ObjectHead | None, upload_id: str) -> int:
    if tail is None:
        return 0
    try:
        count = int(tail.metadata.get(META_PARTS, "0"))
    except ValueError:
        raise StoreError(f"upload {upload_id}: unreadable incomplete-part metadata") from None
    if count < 0:
        raise StoreError(f"upload {upload_id}: unreadable incomplete-part metadata")
    return count


def _as_prefix(prefix: str) -> str:
    """A key prefix ends with '/' (as in tusd), unless it is empty."""
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _content_type(info: UploadInfo) -> str | None:
    """Content-Type of the finished object, from the client's ``filetype`` metadata if sane.

    No other metadata goes to S3: user metadata is limited to 2 KB there, and the info object
    keeps all of it anyway.
    """
    value = info.metadata.get("filetype", "")
    return value if _MIME.fullmatch(value) else None
