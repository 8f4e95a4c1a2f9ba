"""One ``write_chunk``: the body streamed into blocks, committed as it goes.

Bytes are buffered until a block is full (bounded memory: one block, plus the small last block
being merged), then staged with Put Block. A block counts only once a Put Block List names it
(the commit point, atomic); an ordinary write commits after every block and at its end, an
``all_or_nothing`` write only at its end, so a chunk whose checksum fails is never counted.

A request smaller than a block would add a small block per request, and a blob has at most
50,000 committed blocks. So a last block smaller than the block size is merged into the next one
(its bytes read back once, then kept in memory): every committed block but the last is full.

An ordinary write also commits what arrived whenever the body pauses for :data:`COMMIT_EVERY`
seconds, or while a slow body trickles in, at most that often: so HEAD, post-receive hooks, IETF
progress and a crash see bytes as they arrive (as with a file store). Each such commit stages
the small last block again, merged with the new bytes; a budget keeps those re-staged bytes
within twice what the request received (plus :data:`COMMIT_SLACK`), so a slow client costs at
most that, and a fast one (whose blocks fill) nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pytusd.stores.azure.client import BlobStorage, Block
from pytusd.stores.azure.layout import MAX_BLOCK_SIZE, MAX_BLOCKS, META_WRITTEN, new_block_id
from pytusd.stores.base import StoreError, UploadTooLarge

logger = logging.getLogger("pytusd.azure")

#: What a body brought is committed at most this often while it arrives, and when it pauses this long.
COMMIT_EVERY = 0.2
COMMIT_SLACK = 256 * 1024


class BlockWriter:
    """Appends to the block blob ``name``, which holds ``blocks`` (committed) right now.

    ``feed`` each chunk, then ``finish`` (stage the rest, commit); ``close`` always. The state
    (blocks, buffer) changes only after the Azure call it depends on succeeded, so a failed
    early commit leaves everything for the final one.
    """

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
        self._received = 0
        self._restaged = 0
        now = time.monotonic()
        self._last_commit = self._last_feed = now
        #: One Azure sequence at a time: the body's own and the pause commits.
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        if progressive:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def feed(self, chunk: bytes) -> None:
        async with self._lock:
            self._buffer += chunk
            self._received += len(chunk)
            self._last_feed = time.monotonic()
            while len(self._buffer) >= self.block_size:
                await self._stage(self.block_size)
                if self.progressive:
                    await self._commit()
            if self.progressive and self._buffer and self._due(self._last_feed):
                await self._stage(len(self._buffer))
                await self._commit()

    async def finish(self) -> None:
        """Stage what is buffered and commit everything staged."""
        await self.close()
        if self._buffer:
            await self._stage(len(self._buffer))
        await self._commit()

    async def close(self) -> None:
        """Stop the pause commits (waiting for one in flight, so none runs after this)."""
        if self._ticker is None:
            return
        async with self._lock:
            self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        self._ticker = None

    def abandon(self) -> None:
        """The write is cancelled: stop at once. A pause commit cut off in flight is harmless:
        the offset is read back from Azure, committed or not."""
        if self._ticker is not None:
            self._ticker.cancel()

    def _due(self, now: float) -> bool:
        if now - self._last_commit < COMMIT_EVERY:
            return False
        last = self.blocks[-1].size if self.blocks and self.blocks[-1].size < self.block_size else 0
        return self._restaged + last <= 2 * self._received + COMMIT_SLACK

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(COMMIT_EVERY / 2)
            async with self._lock:
                now = time.monotonic()
                if not self._buffer or now - self._last_feed < COMMIT_EVERY or not self._due(now):
                    continue
                try:
                    await self._stage(len(self._buffer))
                    await self._commit()
                except StoreError as exc:
                    # Only an early commit failed: the final one decides (and reports Azure's trouble).
                    logger.warning("%s: could not commit the bytes so far: %s", self.name, exc)
                    return

    async def _commit(self) -> None:
        if not self._dirty:
            return
        await self.client.commit_blocks(
            self.name,
            [b.id for b in self.blocks],
            metadata={META_WRITTEN: f"{time.time():.6f}"},
            content_type=self.content_type,
            content_disposition=self.content_disposition,
            complete=self.offset == self.size,
        )
        self._dirty = False
        self.committed_offset = self.offset
        self._last_commit = time.monotonic()

    async def _stage(self, count: int) -> None:
        """Stage the first ``count`` buffered bytes as a block (with a small last block merged)."""
        data = bytes(self._buffer[:count])
        blocks = list(self.blocks)
        offset = self.offset
        last = blocks[-1] if blocks else None
        merged = 0
        if last is not None and last.size < self.block_size and last.size + len(data) <= MAX_BLOCK_SIZE:
            tail = self._tail
            if tail is None or len(tail) != last.size:
                start = offset - last.size
                tail = b"".join([c async for c in self.client.open_range(self.name, start, offset)])
            data = tail + data
            merged = last.size
            blocks.pop()
            offset -= last.size
        if len(blocks) >= MAX_BLOCKS:
            raise UploadTooLarge(f"an Azure block blob holds at most {MAX_BLOCKS} blocks")
        block = Block(new_block_id(), len(data))
        await self.client.stage_block(self.name, block.id, data)
        del self._buffer[:count]
        self.blocks = [*blocks, block]
        self.offset = offset + len(data)
        self._restaged += merged
        self._tail = data if len(data) < self.block_size else None
        self._dirty = True
