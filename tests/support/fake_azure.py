"""An in-memory Azure container implementing :class:`pytusd.stores.azure.client.BlobStorage`.

The Azure store's logic (streaming into blocks, the commits, merging the last block,
concatenation by block copies) runs unchanged on it, so unit tests check it without Azurite and
can make Azure fail exactly where they want (:meth:`FakeAzure.fail`). It keeps the rules the store
relies on: staged blocks are invisible until a commit names them, a commit discards every other
uncommitted block, all block IDs of a blob have one length, at most 50,000 committed blocks, a blob
with no commit yet does not exist, and Last-Modified has whole seconds.

Operations are counted in :attr:`FakeAzure.calls` under the SDK's names.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from pytusd.stores.azure.client import AzureError, BlobHead, Block, Listed, azure_error
from pytusd.stores.azure.layout import MAX_BLOCKS


@dataclass
class FakeBlob:
    blocks: list[tuple[str, bytes]]
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = ""
    content_disposition: str = ""
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)

    @property
    def data(self) -> bytes:
        return b"".join(data for _, data in self.blocks)


class FakeAzure:
    """One container in memory."""

    def __init__(self) -> None:
        self.blobs: dict[str, FakeBlob] = {}
        self.staged: dict[str, dict[str, bytes]] = {}
        self.calls: Counter[str] = Counter()
        self.opened = False
        #: Blobs committed as complete (the access tier applied).
        self.completed: set[str] = set()
        #: operation -> how many more calls fail (see :meth:`fail`).
        self._failures: dict[str, tuple[int, AzureError]] = {}

    def fail(self, operation: str, times: int = 1, *, unavailable: bool = False) -> None:
        """Make the next ``times`` calls of ``operation`` fail (503 if ``unavailable``, else 400)."""
        status = 503 if unavailable else 400
        self._failures[operation] = (times, azure_error(operation, "Injected", status))

    async def _op(self, operation: str) -> None:
        self.calls[operation] += 1
        await asyncio.sleep(0)
        left, error = self._failures.get(operation, (0, None))
        if left and error is not None:
            self._failures[operation] = (left - 1, error)
            raise error

    def data(self, name: str) -> bytes | None:
        blob = self.blobs.get(name)
        return None if blob is None else blob.data

    # -- BlobStorage ----------------------------------------------------------------------------

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    async def ensure_container(self) -> None:
        await self._op("create_container")

    async def get_bytes(self, name: str) -> bytes | None:
        await self._op("download_blob")
        return self.data(name)

    def _put(self, name: str, data: bytes, content_type: str) -> None:
        self.blobs[name] = FakeBlob([("small", data)], content_type=content_type)
        self.staged.pop(name, None)

    async def create_bytes(self, name: str, data: bytes, content_type: str) -> bool:
        await self._op("upload_blob")
        if name in self.blobs:
            return False
        self._put(name, data, content_type)
        return True

    async def replace_bytes(self, name: str, data: bytes, content_type: str) -> bool:
        await self._op("upload_blob")
        if name not in self.blobs:
            return False
        created = self.blobs[name].created
        self._put(name, data, content_type)
        self.blobs[name].created = created
        return True

    async def head(self, name: str) -> BlobHead | None:
        await self._op("get_blob_properties")
        blob = self.blobs.get(name)
        if blob is None:
            return None
        return BlobHead(len(blob.data), dict(blob.metadata), float(int(blob.modified)))

    async def committed_blocks(self, name: str) -> list[Block] | None:
        await self._op("get_block_list")
        blob = self.blobs.get(name)
        if blob is None:
            return [] if name in self.staged else None
        return [Block(block_id, len(data)) for block_id, data in blob.blocks]

    def _check_id(self, name: str, block_id: str) -> None:
        lengths = {len(i) for i in self.staged.get(name, {})}
        blob = self.blobs.get(name)
        if blob is not None:
            lengths |= {len(i) for i, _ in blob.blocks}
        if lengths and lengths != {len(block_id)}:
            raise azure_error("stage_block", "InvalidBlobOrBlock", 400, "block IDs of different lengths")

    async def stage_block(self, name: str, block_id: str, data: bytes) -> None:
        await self._op("stage_block")
        self._check_id(name, block_id)
        self.staged.setdefault(name, {})[block_id] = bytes(data)

    async def stage_block_from_blob(self, name: str, block_id: str, source: str, start: int, length: int) -> None:
        await self._op("stage_block_from_url")
        blob = self.blobs.get(source)
        if blob is None:
            raise azure_error("stage_block_from_url", "CannotVerifyCopySource", 404)
        data = blob.data
        if start + length > len(data) or length <= 0:
            raise azure_error("stage_block_from_url", "InvalidRange", 416)
        self._check_id(name, block_id)
        self.staged.setdefault(name, {})[block_id] = data[start : start + length]

    async def commit_blocks(
        self,
        name: str,
        block_ids: Sequence[str],
        *,
        metadata: Mapping[str, str],
        content_type: str,
        content_disposition: str,
        complete: bool = False,
    ) -> None:
        await self._op("commit_block_list")
        staged = self.staged.get(name, {})
        blob = self.blobs.get(name)
        committed = dict(blob.blocks) if blob is not None else {}
        if len(block_ids) > MAX_BLOCKS:
            raise azure_error("commit_block_list", "BlockListTooLong", 400)
        blocks: list[tuple[str, bytes]] = []
        for block_id in block_ids:
            data = staged.get(block_id, committed.get(block_id))
            if data is None:
                raise azure_error("commit_block_list", "InvalidBlockList", 400, block_id)
            blocks.append((block_id, data))
        created = blob.created if blob is not None else time.time()
        self.blobs[name] = FakeBlob(blocks, dict(metadata), content_type, content_disposition, created)
        self.staged.pop(name, None)  # uncommitted blocks not in the list are discarded
        if complete:
            self.completed.add(name)

    async def open_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        await self._op("download_blob")
        blob = self.blobs.get(name)
        if blob is None:
            raise azure_error("download_blob", "BlobNotFound", 404)
        data = blob.data[start:end]
        for at in range(0, len(data), 4096):
            await asyncio.sleep(0)
            yield data[at : at + 4096]

    async def delete(self, name: str) -> None:
        await self._op("delete_blob")
        self.blobs.pop(name, None)
        self.staged.pop(name, None)

    async def list_blobs(self, prefix: str) -> AsyncIterator[Listed]:
        await self._op("list_blobs")
        for name in sorted(self.blobs):
            if name.startswith(prefix):
                yield Listed(name, self.blobs[name].created)
