"""One ``write_chunk``: the body streamed into blocks, committed as it goes.

Bytes are buffered until a block is full (bounded memory: one block, plus the small last block
being merged), then staged with Put Block. A block counts only once a Put Block List names it
(the commit point, atomic); an ordinary write commits after every block and at its end, an
``all_or_nothing`` write only at its end, so a chunk whose checksum fails is never counted.

A request smaller than a block would add a small block per request, and a blob has at most
50,000 committed blocks. So a last block smaller than the block size is merged into the next one
(its bytes read back once, then kept in memory): every committed block but the last is full.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pytusd.stores.azure.client import BlobStorage, Block
from pytusd.stores.azure.layout import MAX_BLOCK_SIZE, MAX_BLOCKS, META_WRITTEN, new_block_id
from pytusd.stores.base import UploadTooLarge


class BlockWriter:
    """Appends to the block blob ``name``, which holds ``blocks`` (committed) right now."""

    def __init__(
        self,
        client: BlobStorage,
        name: str,
        blocks: list[Block],
        *,
        block_size: int,
        progressive: bool,
        headers: tuple[str, str],
        size: int | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.blocks = list(blocks)
        self.block_size = block_size
        self.progressive = progressive
        self.content_type, self.content_disposition = headers
        self.size = size
        self.offset = sum(b.size for b in blocks)
        self.committed_offset = self.offset
        self._buffer = bytearray()
        #: The bytes of the last block, once read or written here (None: not known or full).
        self._tail: bytes | None = None
        self._dirty = False

    async def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= self.block_size:
            data = bytes(self._buffer[: self.block_size])
            del self._buffer[: self.block_size]
            await self._stage(data)
            if self.progressive:
                await self.commit()

    async def finish(self) -> None:
        """Stage what is buffered and commit everything staged."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            await self._stage(data)
        await self.commit()

    async def commit(self) -> None:
        if not self._dirty:
            return
        metadata: Mapping[str, str] = {META_WRITTEN: f"{time.time():.6f}"}
        await self.client.commit_blocks(
            self.name,
            [b.id for b in self.blocks],
            metadata=metadata,
            content_type=self.content_type,
            content_disposition=self.content_disposition,
            complete=self.offset == self.size,
        )
        self._dirty = False
        self.committed_offset = self.offset

    async def _stage(self, data: bytes) -> None:
        last = self.blocks[-1] if self.blocks else None
        if last is not None and last.size < self.block_size and last.size + len(data) <= MAX_BLOCK_SIZE:
            tail = self._tail
            if tail is None or len(tail) != last.size:
                tail = b"".join(
                    [c async for c in self.client.open_range(self.name, self.offset - last.size, self.offset)]
                )
            data = tail + data
            self.blocks.pop()
            self.offset -= last.size
        if len(self.blocks) >= MAX_BLOCKS:
            raise UploadTooLarge(f"an Azure block blob holds at most {MAX_BLOCKS} blocks")
        block = Block(new_block_id(), len(data))
        await self.client.stage_block(self.name, block.id, data)
        self.blocks.append(block)
        self.offset += len(data)
        self._tail = data if len(data) < self.block_size else None
        self._dirty = True
