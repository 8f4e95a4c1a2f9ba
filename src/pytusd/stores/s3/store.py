"""S3Store, the DataStore contract on S3: what each call does with the objects of an upload.

The layout, the commit point and why readers beside a writer see consistent states are in the
package documentation (:mod:`pytusd.stores.s3`); the keys are in :mod:`.layout`, reading an
upload back in :mod:`.state`, uploads and commits in :mod:`.commit`, one write in :mod:`.writer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence

from pytusd.info import UploadInfo
from pytusd.metrics.recorder import Recorder
from pytusd.stores.base import DataStore, DirectSource, StoreError, UploadNotFound, UploadTooLarge
from pytusd.stores.s3.aws import ClientSettings, S3Client
from pytusd.stores.s3.client import ObjectStorage, S3Error
from pytusd.stores.s3.commit import Committer
from pytusd.stores.s3.layout import (
    EMPTY_MD5,
    INFO_SUFFIX,
    META_MULTIPART,
    META_WRITTEN,
    OWN_STORAGE_KEYS,
    STORAGE_MULTIPART,
    STORAGE_TYPE,
    KeyLayout,
    acceptable_id,
    object_headers,
    run_of,
)
from pytusd.stores.s3.parts import MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, MiB
from pytusd.stores.s3.recall import Recall
from pytusd.stores.s3.state import State, check_free, load_info, put_info, read_state
from pytusd.stores.s3.writer import ChunkWriter

__all__ = ["S3Store", "UnfinishedPartsUnreadable"]


class UnfinishedPartsUnreadable(StoreError):
    """:meth:`S3Store.read` of bytes that sit in parts of an unfinished multipart upload.

    S3 has no API to read the parts of a multipart upload in progress (GetObject sees only
    finished objects), so of an unfinished upload only the bytes in the incomplete part can be
    read; the whole upload can once it is complete.
    """


class S3Store(DataStore):
    """tus uploads as S3 multipart uploads; see the package documentation for the layout."""

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
        max_buffered_parts: int = 20,
        content_hashes: bool = True,
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
        if max_buffered_parts < 1:
            raise ValueError("at least one part must be allowed to wait on disk")
        if addressing not in ("auto", "path", "virtual"):
            raise ValueError("S3 addressing must be auto, path or virtual")
        self.bucket = bucket
        self.keys = KeyLayout(object_prefix, info_prefix)
        settings = ClientSettings(
            bucket=bucket,
            endpoint_url=endpoint_url or None,
            region=region or None,
            addressing=addressing,
            # Parts in flight plus the small requests (info, heads, lists) of other uploads.
            max_connections=max_concurrent_parts + 32,
        )
        self.client: ObjectStorage = client or S3Client(settings)
        self._io = Committer(
            self.client,
            self.keys,
            part_size=part_size,
            max_concurrent_parts=max_concurrent_parts,
            max_buffered_parts=max_buffered_parts,
            temp_dir=temp_dir,
            tail_cache_bytes=tail_cache_bytes,
            content_hashes=content_hashes,
        )
        #: The last read and the last write of each upload, to skip S3 requests (see recall.py).
        self._recall = Recall()

    @property
    def object_prefix(self) -> str:
        return self.keys.object_prefix

    @property
    def info_prefix(self) -> str:
        return self.keys.info_prefix

    @property
    def preferred_part_size(self) -> int:
        return self._io.preferred_part_size

    @property
    def max_concurrent_parts(self) -> int:
        return self._io.max_concurrent_parts

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._io.open()
        await self.client.open()
        try:
            await self.client.check_bucket()
        except S3Error as exc:
            await self.close()
            raise StoreError(f"cannot use S3 bucket {self.bucket!r}: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()
        self._io.close()

    def record_requests(self, metrics: Recorder) -> None:
        if isinstance(self.client, S3Client):
            self.client.metrics = metrics

    @property
    def _temp_dir(self) -> str:
        return self._io.temp_dir

    # -- keys (see layout.py) -------------------------------------------------------------------

    def object_key(self, upload_id: str) -> str:
        """Key of the upload's data; refuses IDs that would collide with another's metadata."""
        return self.keys.object_key(upload_id)

    def info_key(self, upload_id: str) -> str:
        return self.keys.info_key(upload_id)

    def part_key(self, upload_id: str) -> str:
        return self.keys.part_key(upload_id)

    def finals_prefix(self, upload_id: str) -> str:
        return self.keys.finals_prefix(upload_id)

    # -- info and state (see state.py) ------------------------------------------------------------

    async def _load_info(self, upload_id: str) -> UploadInfo | None:
        return await load_info(self.client, self.keys, upload_id)

    async def _put_info(self, info: UploadInfo) -> None:
        await put_info(self.client, self.keys, info)

    async def _state(self, upload_id: str, *, finals: bool = False, to_write: bool = False) -> State:
        """``to_write``: a write follows, which may need State.clean (to start or go on with a run of
        parts, see ChunkWriter; without content hashes, to name a pending part)."""
        started = asyncio.get_running_loop().time()
        state = await read_state(
            self.client, self.keys, upload_id, finals=finals, known=self._io.known, look_above=to_write
        )
        if state.clean and self._recall.unsettled(upload_id, started):
            state.clean = False  # a part of a write that failed here may still land
        self._recall.read(upload_id, started, state)
        return state

    async def _data_key(self, upload_id: str) -> str:
        """The data key for a read: from the state get_info just read (a GET reads it first), else
        from the info object."""
        info = self._recall.recent_info(upload_id, asyncio.get_running_loop().time())
        if info is not None:
            return self.keys.data_key(info)
        info = await self._load_info(upload_id)
        if info is None:
            raise UploadNotFound(upload_id)
        return self.keys.data_key(info)

    async def _handoff(self, upload_id: str, offset: int) -> State:
        """The state for a write: the one the handler's get_info just read, if it may stand in.

        The handler reads an upload (get_info) under its lock right before it writes, so a second
        read would find the same: nobody else writes while the lock is held, and a read that
        started earlier (a HEAD beside it) never replaces a later one (:meth:`Recall.read`). The
        state is used once, only if it is recent and at the offset the write starts from; else
        (another caller, a slow hook in between) S3 is read again.
        """
        state = self._recall.handoff(upload_id, offset, asyncio.get_running_loop().time())
        if state is not None:
            return state
        state = await self._state(upload_id, to_write=True)
        self._recall.forget_read(upload_id)  # used up here
        return state

    # -- contract -------------------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        started = asyncio.get_running_loop().time()
        chosen = self.keys.chosen_key(info, self.bucket)
        key = chosen or self.object_key(info.id)
        if info.size is not None and info.size > MAX_OBJECT_SIZE:
            raise UploadTooLarge(f"S3 objects hold at most {MAX_OBJECT_SIZE} bytes")
        await check_free(self.client, self.keys, info.id, chosen)
        content_type, disposition = object_headers(info)
        if info.size == 0 and not info.is_final:
            # S3 cannot complete a multipart upload without parts: a 0-byte upload is finished
            # as soon as it exists, as a plain empty object.
            await self.client.put(key, b"", 0, EMPTY_MD5, content_type=content_type, content_disposition=disposition)
            multipart = ""
        else:
            multipart = await self.client.create_multipart(key, content_type, disposition)
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
        if multipart:
            # Creation with upload writes next: it knows the state without reading it (a new
            # multipart upload holds no part: clean).
            self._recall.read(info.id, started, State(info, multipart, None, [], None, clean=True))
        return info

    async def get_info(self, upload_id: str) -> UploadInfo:
        state = await self._state(upload_id, finals=True)
        state.info.offset = state.offset
        return state.info

    async def get_info_to_write(self, upload_id: str, *, held_here_last: bool = False) -> UploadInfo:
        """The state this process's last write left, if the lock says nobody else wrote since.

        Every change to an upload is made under its lock (the finals a partial waits for aside:
        partials are always read), and every change this store makes itself other than a
        completed write forgets what it remembered. So a lock that no other process held since
        this one released it means S3 still holds what the last write here left, and a PATCH
        that follows another costs no read: on Swift that is a tenth of an 8 MiB PATCH's time.
        """
        left = self._recall.last_write(upload_id) if held_here_last else None
        if left is None:
            state = await self._state(upload_id, finals=True, to_write=True)
            state.info.offset = state.offset
            return state.info
        now = asyncio.get_running_loop().time()
        self._recall.read(upload_id, now, left)
        self._recall.vouched(upload_id, now)
        info = dataclasses.replace(
            left.info, metadata=dict(left.info.metadata), storage=dict(left.info.storage), offset=left.offset
        )
        return info

    def forget_read_to_write(self, upload_id: str) -> None:
        """The handler's read kept for the write (Recall.handoff) does not outlive the lock. (Reads
        without the lock, a HEAD's, are kept too; a write never starts from one because every
        write path reads, or creates, under its lock first, and the later read wins.) What this
        process's last write left (Recall.last_write) does outlive it: the lock says when it is
        still true."""
        self._recall.forget_read(upload_id)
        self._recall.unvouch(upload_id)

    async def update_info(self, info: UploadInfo) -> None:
        self._recall.forget(info.id)
        stored = await self._load_info(info.id)
        if stored is None:
            raise UploadNotFound(info.id)
        # Whatever the caller did to Storage, the keys that locate the data stay as they are.
        own = {k: stored.storage[k] for k in OWN_STORAGE_KEYS if k in stored.storage}
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
        if not acceptable_id(final_id):
            raise StoreError(f"invalid final upload ID {final_id!r}")
        await self.client.put(self.finals_prefix(partial_id) + final_id, b"", 0, EMPTY_MD5)

    async def declare_length(self, upload_id: str, length: int) -> None:
        self._recall.forget(upload_id)
        info = await self._load_info(upload_id)
        if info is None:
            raise UploadNotFound(upload_id)
        info.size = length
        await self._put_info(info)
        state = await self._state(upload_id)
        if state.full:
            # The bytes were all there before their number was known (IETF draft, or a PATCH
            # declaring the length with an empty body): finish now.
            await self._io.finish_from_state(state)

    async def write_chunk(
        self,
        upload_id: str,
        offset: int,
        source: AsyncIterable[bytes],
        *,
        all_or_nothing: bool = False,
        length: int | None = None,
    ) -> int:
        self._recall.forget_write(upload_id)
        state = await self._handoff(upload_id, offset)
        if state.completed is not None:
            async for chunk in source:
                if chunk:
                    raise StoreError(f"upload {upload_id} is complete; nothing can be appended")
            return 0
        if offset != state.offset:
            raise StoreError(f"upload {upload_id}: write at {offset}, but S3 holds {state.offset} bytes")
        writer = ChunkWriter(self._io, state, progressive=not all_or_nothing, length=length)
        done = False
        if isinstance(source, DirectSource) and not all_or_nothing:
            try:
                await writer.pour(source)
                written = await writer.commit()
                self._recall.wrote(upload_id, writer.left_behind(), time.time() if written else None)
                done = True
                return written
            finally:
                await self._end_write(upload_id, writer, done)
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
            written = await writer.commit()
            self._recall.wrote(upload_id, writer.left_behind(), time.time() if written else None)
            done = True
            return written
        finally:
            await self._end_write(upload_id, writer, done)

    async def _end_write(self, upload_id: str, writer: ChunkWriter, done: bool) -> None:
        """Whatever was not committed (a discarded chunk, a failure, a cancellation) goes; a write
        that did not end well may have started parts that land later (Recall.unsettled)."""
        if not done:
            self._recall.failed(upload_id, asyncio.get_running_loop().time())
        await writer.discard()

    def read(self, upload_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._read(upload_id, start, end)

    async def _read(self, upload_id: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        key = await self._data_key(upload_id)
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
            self._recall.forget(upload_id)
            await self._io.finish_from_state(state)
            return await self.client.open_range(self.keys.data_key(state.info), start, end)
        if state.completed is not None:
            return await self.client.open_range(self.keys.data_key(state.info), start, end)
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
        self._recall.forget(upload_id)
        info = await self._load_info(upload_id)
        if info is None:
            raise UploadNotFound(upload_id)
        key = self.keys.data_key(info)
        # The info object first: once it is gone the upload is gone for every reader, and what
        # a crash might leave behind below is unreachable garbage, never a half-deleted upload.
        await self.client.delete(self.info_key(upload_id))
        self._io.cache.drop(upload_id)
        self._io.known.drop(upload_id)
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
        self._recall.forget(final.id)
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
                await self._io.finish_from_state(state)
                state = await self._state(partial.id)
            if state.completed is None:
                raise StoreError(f"partial upload {partial.id} could not be completed")
            keys.append(self.keys.data_key(state.info))
            sizes.append(state.completed.size)
        await self._io.concatenate(target, keys, sizes)

    async def list_uploads(self) -> AsyncIterator[str]:
        async for key in self.client.list_keys(self.info_prefix):
            if not key.endswith(INFO_SUFFIX):
                continue
            upload_id = key[len(self.info_prefix) : -len(INFO_SUFFIX)]
            if acceptable_id(upload_id):
                yield upload_id

    async def last_write_time(self, upload_id: str) -> float:
        ended = self._recall.last_written(upload_id, asyncio.get_running_loop().time())
        if ended is not None:
            return ended  # the lock vouched that the last write was this process's (see Recall)
        info, tail = await asyncio.gather(self._load_info(upload_id), self.client.head(self.part_key(upload_id)))
        if info is None:
            raise UploadNotFound(upload_id)
        multipart = info.storage.get(STORAGE_MULTIPART, "")
        if tail is not None and tail.metadata.get(META_MULTIPART) == multipart:
            written = tail.last_modified
            with contextlib.suppress(ValueError):
                written = float(tail.metadata.get(META_WRITTEN, ""))
            if tail.size == 0 and run_of(tail.metadata) is not None:
                # The writes of a run commit nothing: its newest part says when it was written.
                # Parts before the last one this process wrote are older: not listed again.
                left = self._recall.last_write(upload_id)
                after = len(left.parts) - 1 if left is not None and left.parts else 0
                try:
                    parts = await self.client.list_parts(self.keys.data_key(info), multipart, MAX_PARTS, after=after)
                except S3Error as exc:
                    if not exc.not_found:
                        raise
                    # Completed (or being terminated) meanwhile: the object's time, else the commit's.
                    finished = await self.client.head(self.keys.data_key(info))
                    return finished.last_modified if finished is not None else written
                # A listing that lags behind a part this process wrote must not date the upload
                # back to the run's start: when that write ended is known here.
                return max([written, self._recall.ended(upload_id), *(p.modified for p in parts)])
            return written
        finished = await self.client.head(self.keys.data_key(info))
        if finished is not None:
            return finished.last_modified
        return info.created_at


async def _nothing() -> AsyncGenerator[bytes, None]:
    return
    yield b""  # pragma: no cover - makes this an async generator
