"""GCSStore, the DataStore contract on Google Cloud Storage: what each call does with the objects.

The layout, the commit point and the crash windows are in the package documentation
(:mod:`pytusd.stores.gcs`); names in :mod:`.layout`, reading an upload back in :mod:`.state`,
chunk commits and compose in :mod:`.compose`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from pytusd.info import UploadInfo
from pytusd.metrics.recorder import Recorder
from pytusd.stores.base import (
    DataStore,
    InvalidStorage,
    StoreError,
    UploadExists,
    UploadNotFound,
    UploadTooLarge,
)
from pytusd.stores.gcs.client import Bucket, GCSError
from pytusd.stores.gcs.compose import compact, compose_into, delete_all
from pytusd.stores.gcs.google import GoogleBucket
from pytusd.stores.gcs.layout import (
    MAX_OBJECT_SIZE,
    OWN_STORAGE_KEYS,
    STORAGE_TYPE,
    Names,
    check_storage,
    content_type,
    storable_id,
)
from pytusd.stores.gcs.spool import Spool, open_spool_dir
from pytusd.stores.gcs.state import State, load_info, own_objects, put_info, read_state
from pytusd.stores.gcs.writer import ChunkWriter
from pytusd.stores.handoff import Handoff

__all__ = ["GCSStore"]

#: A PATCH body is committed (uploaded as a chunk) at the latest when this many bytes wait (see
#: writer.py for the commits by time).
DEFAULT_COMMIT_SIZE = 16 * 1024 * 1024

log = logging.getLogger("pytusd.stores.gcs")


class GCSStore(DataStore):
    """tus uploads as GCS objects appended to with compose; see the package documentation."""

    features = frozenset({"termination", "concatenation", "creation-defer-length", "download"})

    def __init__(
        self,
        bucket: str,
        *,
        object_prefix: str = "",
        endpoint: str | None = None,
        spool_dir: str | None = None,
        commit_size: int = DEFAULT_COMMIT_SIZE,
        client: Bucket | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("a GCS bucket is required")
        if commit_size < 1:
            raise ValueError("the commit size must be positive")
        self.bucket_name = bucket
        self.names = Names(object_prefix)
        self.client: Bucket = client or GoogleBucket(bucket, endpoint or None)
        self.commit_size = commit_size
        self._spool_parent = spool_dir
        self._spool_dir: str | None = None
        #: The state a PATCH's handler read, for its write (see pytusd.stores.handoff).
        self._handoff: Handoff[State] = Handoff()

    @property
    def object_prefix(self) -> str:
        return self.names.prefix

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._spool_dir = open_spool_dir(self._spool_parent or os.path.join(tempfile.gettempdir(), "pytusd-gcs"))
        await self.client.open()
        try:
            await self.client.check_bucket()
        except GCSError as exc:
            await self.close()
            raise StoreError(f"cannot use GCS bucket {self.bucket_name!r}: {exc}") from exc

    def record_requests(self, metrics: Recorder) -> None:
        self.client.metrics = metrics

    async def close(self) -> None:
        await self.client.close()
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool_dir = None

    def _new_spool(self) -> Spool:
        if self._spool_dir is None:
            raise StoreError("GCS store is not started")
        return Spool(self._spool_dir)

    async def _state(self, upload_id: str) -> State:
        return await read_state(self.client, self.names, upload_id)

    # -- contract -------------------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        if info.size is not None and info.size > MAX_OBJECT_SIZE:
            raise UploadTooLarge(f"GCS objects hold at most {MAX_OBJECT_SIZE} bytes")
        if not storable_id(info.id):
            raise InvalidStorage("the GCS store cannot keep an upload whose ID has ';'")
        check_storage(info, self.bucket_name, self.names)
        data_name = self.names.data(info.id)
        self._handoff.forget(info.id)
        if await self.client.stat(self.names.info(info.id)) is not None:
            raise UploadExists(info.id)
        # What an earlier upload of this ID may have left (a crash in terminate) must not count.
        # (Two creations of one hook-chosen ID at the same moment are told apart only by the
        # info object's precondition below, after both cleaned up: best effort, as on S3.)
        leftovers = [obj.name for obj in await own_objects(self.client, self.names, info.id)]
        await delete_all(self.client, [data_name, *leftovers])
        info.offset = 0
        info.storage = {**info.storage, "Type": STORAGE_TYPE, "Bucket": self.bucket_name, "Key": data_name}
        # No data object yet: the first write's compose creates it (a missing one is empty).
        # The info object comes last: it is what makes the upload exist.
        try:
            await put_info(self.client, self.names, info, if_absent=True)
        except GCSError as exc:
            if exc.precondition_failed:
                raise UploadExists(info.id) from exc
            raise
        return info

    async def get_info(self, upload_id: str) -> UploadInfo:
        state = await self._state(upload_id)
        state.info.offset = state.offset
        return state.info

    async def get_info_to_write(self, upload_id: str, *, held_here_last: bool = False) -> UploadInfo:
        """:meth:`get_info`, the state kept for the write that follows under the same lock: a
        PATCH reads its upload's three objects once, not twice (pytusd.stores.handoff)."""
        state = await self._state(upload_id)
        self._handoff.keep(upload_id, state)
        info = state.info.copy()  # the caller may change it; the kept state stays as read
        info.offset = state.offset
        return info

    def forget_read_to_write(self, upload_id: str) -> None:
        self._handoff.forget(upload_id)

    async def update_info(self, info: UploadInfo) -> None:
        self._handoff.forget(info.id)
        stored = await load_info(self.client, self.names, info.id)
        if stored is None:
            raise UploadNotFound(info.id)
        # Whatever the caller did to Storage, the keys that locate the data stay as they are.
        own = {k: stored.storage[k] for k in OWN_STORAGE_KEYS if k in stored.storage}
        info.storage = {**info.storage, **own}
        await put_info(self.client, self.names, info)

    async def declare_length(self, upload_id: str, length: int) -> None:
        self._handoff.forget(upload_id)
        info = await load_info(self.client, self.names, upload_id)
        if info is None:
            raise UploadNotFound(upload_id)
        info.size = length
        await put_info(self.client, self.names, info)
        state = await self._state(upload_id)
        if state.chunks and state.complete:  # complete by this declaration: make <id> whole
            try:
                await compact(self.client, self.names, state, content_type(info))
            except StoreError as exc:
                log.warning("upload %s: compose deferred: %s", upload_id, exc)

    async def add_pending_final(self, partial_id: str, final_id: str) -> None:
        """One empty object per waiting final: a single atomic write that touches no other object,
        so it needs no lock and cannot undo the partial's own changes to its info."""
        if await self.client.stat(self.names.info(partial_id)) is None:
            raise UploadNotFound(partial_id)
        self.names.data(final_id)  # the final's ID must be valid (an object name below)
        await self.client.put_bytes(self.names.finals(partial_id) + final_id, final_id.encode())

    async def write_chunk(
        self,
        upload_id: str,
        offset: int,
        source: AsyncIterable[bytes],
        *,
        all_or_nothing: bool = False,
        length: int | None = None,
    ) -> int:
        kept = self._handoff.take(upload_id)
        state = kept if kept is not None and kept.offset == offset else await self._state(upload_id)
        if offset != state.offset:
            raise StoreError(f"upload {upload_id}: write at {offset}, but GCS holds {state.offset} bytes")
        if state.stale:
            await delete_all(self.client, state.stale)
            state.stale = []
        writer = ChunkWriter(
            self.client, self.names, state, self._new_spool, progressive=not all_or_nothing,
            commit_size=self.commit_size,
        )  # fmt: skip
        try:
            iterator = aiter(source)
            while True:
                try:
                    data = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception:
                    if not all_or_nothing:
                        # The bytes that arrived before the source failed are kept.
                        await writer.commit()
                    raise
                if data:
                    writer.feed(data)
            await writer.commit()
            return writer.written
        finally:
            await writer.close()

    def read(self, upload_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._read(upload_id, start, end)

    async def _read(self, upload_id: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        state = await self._state(upload_id)
        stop = state.offset if end is None else min(end, state.offset)
        data_name = self.names.data(upload_id)
        segments = [(data_name, 0, state.stored)] + [(c.name, c.start, c.end) for c in state.chunks]
        for name, first, last in segments:
            lo, hi = max(start, first), min(stop, last)
            if lo >= hi:
                continue
            try:
                body = await self.client.open_range(name, lo - first, hi - first)
            except GCSError as exc:
                if not exc.not_found or name == data_name:
                    raise UploadNotFound(upload_id) if exc.not_found else exc from exc
                # A writer composed the chunk into the data object (then deleted it) meanwhile.
                body = await self.client.open_range(data_name, lo, hi)
            try:
                async for block in body:
                    yield block
            finally:
                await body.aclose()

    async def terminate(self, upload_id: str) -> None:
        self._handoff.forget(upload_id)
        if await self.client.stat(self.names.info(upload_id)) is None:
            raise UploadNotFound(upload_id)
        # The info object first: once it is gone the upload is gone for every reader; whatever a
        # crash leaves below is unreachable, and create() clears it before the ID is used again.
        await self.client.delete(self.names.info(upload_id))
        rest = [obj.name for obj in await own_objects(self.client, self.names, upload_id)]
        await delete_all(self.client, [self.names.data(upload_id), *rest])

    async def concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> None:
        self._handoff.forget(final.id)
        target = await self._state(final.id)
        if target.offset > 0:
            return  # done before (a retry after a crash)
        sources: list[str] = []
        for partial in partials:
            state = await self._state(partial.id)
            if state.info.size is None or state.offset != state.info.size:
                raise StoreError(f"partial upload {partial.id} is not complete")
            if state.stored:
                sources.append(self.names.data(partial.id))
            sources += [c.name for c in state.chunks]
        await compose_into(
            self.client,
            self.names.data(final.id),
            sources,
            if_generation=target.generation,
            temp_prefix=self.names.chunks(final.id),
            content_type=content_type(target.info),
        )

    async def list_uploads(self) -> AsyncIterator[str]:
        async for obj in self.client.list(self.names.prefix):
            upload_id = self.names.upload_of_info(obj.name)
            if upload_id is not None:
                yield upload_id

    async def last_write_time(self, upload_id: str) -> float:
        state = await self._state(upload_id)
        written = state.last_write
        return state.info.created_at if written is None else max(written, state.info.created_at)
