"""AzureStore, the DataStore contract on Azure Blob Storage: what each call does with the blobs.

The layout, the commit point and the crash windows are in the package documentation
(:mod:`pytusd.stores.azure`); names in :mod:`.layout`, one write in :mod:`.writer`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from pytusd.info import UploadInfo
from pytusd.metrics.recorder import Recorder
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.azure.client import AzureError, AzureUnavailable, BlobStorage, Block
from pytusd.stores.azure.layout import (
    MAX_BLOB_SIZE,
    MAX_BLOCKS,
    MAX_COPY_SIZE,
    META_WRITTEN,
    Layout,
    MiB,
    blob_headers,
    block_size_for,
    new_block_id,
)
from pytusd.stores.azure.writer import BlockWriter
from pytusd.stores.base import DataStore, StoreError, UploadExists, UploadNotFound, UploadTooLarge
from pytusd.stores.handoff import Handoff

__all__ = ["AzureStore"]

INFO_TYPE = "application/json"


class AzureStore(DataStore):
    """tus uploads as Azure block blobs; see the package documentation for the layout."""

    features = frozenset({"termination", "concatenation", "creation-defer-length", "download"})

    def __init__(
        self,
        container: str,
        client: BlobStorage,
        *,
        object_prefix: str = "",
        block_size: int = 8 * MiB,
        copy_size: int = MAX_COPY_SIZE,
    ) -> None:
        if not container:
            raise ValueError("an Azure container is required")
        if not 1 <= block_size <= MAX_COPY_SIZE:
            raise ValueError("the Azure block size must be between 1 byte and 4000 MiB")
        self.container = container
        self.layout = Layout(container, object_prefix)
        self.client = client
        self.block_size = block_size
        self.copy_size = min(copy_size, MAX_COPY_SIZE)
        #: The info and committed blocks a PATCH's handler read, for its write (pytusd.stores.handoff).
        self._handoff: Handoff[tuple[UploadInfo, list[Block]]] = Handoff()

    async def start(self) -> None:
        await self.client.open()
        try:
            await self.client.ensure_container()
        except AzureError as exc:
            await self.client.close()
            raise StoreError(f"cannot use Azure container {self.container!r}: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()

    def record_requests(self, metrics: Recorder) -> None:
        self.client.metrics = metrics

    # -- info ---------------------------------------------------------------------------------

    async def _load_info(self, upload_id: str) -> UploadInfo:
        raw = await self.client.get_bytes(self.layout.info_name(upload_id))
        if raw is None:
            raise UploadNotFound(upload_id)
        try:
            info = UploadInfo.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"corrupt info blob for upload {upload_id}") from exc
        info.id = upload_id
        return info

    @staticmethod
    def _info_bytes(info: UploadInfo) -> bytes:
        stored = info.copy()
        stored.offset = 0  # the offset is the data blob's committed size, never kept here
        return json.dumps(stored.to_json(), separators=(",", ":")).encode()

    async def _pending_finals(self, upload_id: str) -> list[str]:
        prefix = self.layout.finals_prefix(upload_id)
        listed = [item async for item in self.client.list_blobs(prefix)]
        listed.sort(key=lambda item: (item.created, item.name))
        return [item.name[len(prefix) :] for item in listed]

    # -- contract -------------------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        if info.size is not None and info.size > MAX_BLOB_SIZE:
            raise UploadTooLarge(f"an Azure block blob holds at most {MAX_BLOB_SIZE} bytes")
        info = info.copy()
        info.storage = self.layout.storage(info)
        info.offset = 0
        info_name = self.layout.info_name(info.id)
        self._handoff.forget(info.id)
        if await self.client.get_bytes(info_name) is not None:
            raise UploadExists(info.id)
        # What a terminate that crashed half-way left under this ID goes before the ID is taken.
        await self._delete_data(info.id)
        if not await self.client.create_bytes(info_name, self._info_bytes(info), INFO_TYPE):
            raise UploadExists(info.id)
        return info

    async def get_info(self, upload_id: str) -> UploadInfo:
        info, head = await asyncio.gather(
            self._load_info(upload_id), self.client.head(self.layout.data_name(upload_id))
        )
        info.offset = head.size if head is not None else 0
        return await self._with_finals(info)

    async def _with_finals(self, info: UploadInfo) -> UploadInfo:
        if info.is_partial:
            info.pending_finals += [f for f in await self._pending_finals(info.id) if f not in info.pending_finals]
        return info

    async def get_info_to_write(self, upload_id: str, *, held_here_last: bool = False) -> UploadInfo:
        """:meth:`get_info` from the committed block list instead of the blob's properties, both
        kept for the write that follows under the same lock, which needs them: a PATCH reads the
        info blob and the block list once, not twice (pytusd.stores.handoff)."""
        name = self.layout.data_name(upload_id)
        info, blocks = await asyncio.gather(self._load_info(upload_id), self._committed(name))
        if blocks is None:
            head = await self.client.head(name)
            info.offset = head.size if head is not None else 0
        else:
            self._handoff.keep(upload_id, (info.copy(), blocks))
            info.offset = sum(b.size for b in blocks)
        return await self._with_finals(info)

    async def _committed(self, name: str) -> list[Block] | None:
        """The committed blocks (none for a blob not written yet), or None where only the blob's
        properties tell its size: an empty list (blocks staged by a write whose commit failed, or
        a blob written whole by Put Blob, not by this store) or a list refused (the archive tier).
        Azure unavailable or throttling is answered as such, not asked more."""
        try:
            blocks = await self.client.committed_blocks(name)
        except AzureUnavailable:
            raise
        except AzureError:
            return None
        if blocks is None:
            return []
        return blocks or None

    def forget_read_to_write(self, upload_id: str) -> None:
        self._handoff.forget(upload_id)

    async def update_info(self, info: UploadInfo) -> None:
        self._handoff.forget(info.id)
        info = info.copy()
        if not info.storage:
            info.storage = self.layout.storage(info)
        if not await self.client.replace_bytes(self.layout.info_name(info.id), self._info_bytes(info), INFO_TYPE):
            raise UploadNotFound(info.id)

    async def add_pending_final(self, partial_id: str, final_id: str) -> None:
        """One empty blob per waiting final: creating a blob is atomic and leaves the info blob
        alone, so a length the partial's own PATCH declares at the same moment is never undone."""
        await self._load_info(partial_id)
        marker = self.layout.finals_prefix(partial_id) + final_id
        if not is_valid_upload_id(final_id):
            raise StoreError(f"invalid final upload ID {final_id!r}")
        await self.client.create_bytes(marker, b"", "application/octet-stream")

    async def write_chunk(
        self,
        upload_id: str,
        offset: int,
        source: AsyncIterable[bytes],
        *,
        all_or_nothing: bool = False,
        length: int | None = None,
    ) -> int:
        name = self.layout.data_name(upload_id)
        kept = self._handoff.take(upload_id)
        if kept is not None and sum(b.size for b in kept[1]) == offset:
            info, blocks = kept
        else:
            info = await self._load_info(upload_id)
            blocks = await self.client.committed_blocks(name) or []
        held = sum(b.size for b in blocks)
        if held != offset:
            raise StoreError(f"upload {upload_id}: write at {offset}, but Azure holds {held} bytes")
        writer = BlockWriter(
            self.client,
            name,
            blocks,
            block_size=block_size_for(info.size, self.block_size),
            progressive=not all_or_nothing,
            headers=blob_headers(info),
            size=info.size,
        )
        iterator = aiter(source)
        try:
            while True:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception:
                    if not all_or_nothing:
                        # The bytes that arrived before the source failed are kept; the client
                        # resumes after them.
                        await writer.finish()
                    raise
                if chunk:
                    await writer.feed(chunk)
            await writer.finish()
        finally:
            writer.abandon()
        return writer.committed_offset - offset

    def read(self, upload_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._read(upload_id, start, end)

    async def _read(self, upload_id: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        info = await self.get_info(upload_id)
        stop = info.offset if end is None else min(end, info.offset)
        if start >= stop:
            return
        async for block in self.client.open_range(self.layout.data_name(upload_id), start, stop):
            yield block

    async def terminate(self, upload_id: str) -> None:
        self._handoff.forget(upload_id)
        info_name = self.layout.info_name(upload_id)
        if await self.client.get_bytes(info_name) is None:
            raise UploadNotFound(upload_id)
        # The info blob first: once it is gone the upload is gone for every reader, and what a
        # crash leaves below is unreachable garbage (create clears it), never half an upload.
        await self.client.delete(info_name)
        await self._delete_data(upload_id)

    async def _delete_data(self, upload_id: str) -> None:
        prefix = self.layout.finals_prefix(upload_id)
        names = [self.layout.data_name(upload_id)] + [item.name async for item in self.client.list_blobs(prefix)]
        for result in await asyncio.gather(*(self.client.delete(n) for n in names), return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> None:
        """Put Block From URL copies each partial into blocks of the final blob inside Azure (in
        ranges of at most 4000 MiB); one Put Block List then commits them all, or nothing."""
        self._handoff.forget(final.id)
        ranges: list[tuple[str, int, int]] = []
        for partial in partials:
            size = (await self.get_info(partial.id)).offset
            source = self.layout.data_name(partial.id)
            ranges += [(source, start, min(self.copy_size, size - start)) for start in range(0, size, self.copy_size)]
        if len(ranges) > MAX_BLOCKS:
            raise UploadTooLarge(f"an Azure block blob holds at most {MAX_BLOCKS} blocks")
        name = self.layout.data_name(final.id)
        ids = [new_block_id() for _ in ranges]
        limit = asyncio.Semaphore(8)

        async def copy(block_id: str, source: str, start: int, length: int) -> None:
            async with limit:
                await self.client.stage_block_from_blob(name, block_id, source, start, length)

        await asyncio.gather(*(copy(i, *r) for i, r in zip(ids, ranges, strict=True)))
        info = await self._load_info(final.id)
        content_type, disposition = blob_headers(info)
        await self.client.commit_blocks(
            name,
            ids,
            metadata={META_WRITTEN: f"{time.time():.6f}"},
            content_type=content_type,
            content_disposition=disposition,
            complete=True,
        )

    async def list_uploads(self) -> AsyncIterator[str]:
        async for item in self.client.list_blobs(self.layout.prefix):
            upload_id = self.layout.upload_id_of_info(item.name)
            if upload_id is not None:
                yield upload_id

    async def last_write_time(self, upload_id: str) -> float:
        info, head = await asyncio.gather(
            self._load_info(upload_id), self.client.head(self.layout.data_name(upload_id))
        )
        if head is None:
            return info.created_at
        try:
            return float(head.metadata.get(META_WRITTEN, ""))
        except ValueError:
            return head.last_modified
