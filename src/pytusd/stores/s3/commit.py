"""The S3 side of writing: part uploads and the two commit points, shared by the store and the writer.

A write counts once it is *committed* (see the package docs): by writing the incomplete-part
object with the new part count (:meth:`Committer.commit_tail`), or by completing the multipart
upload (:meth:`Committer.complete`). The part writer commits as a body arrives; the store itself
finishes uploads too (a declared length, a read that finds all bytes there, concatenation). So
these operations, and the local things they need (the spool directory, the tail cache, the
semaphore bounding parts in flight), are one object that both hold, rather than methods of the
store the writer would have to call back into.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pytusd.stores.base import StoreError
from pytusd.stores.s3.client import ObjectHead, ObjectStorage, Part
from pytusd.stores.s3.layout import (
    EMPTY_MD5,
    META_COMMIT,
    META_COMPLETE,
    META_MULTIPART,
    META_PARTS,
    META_PENDING,
    META_RUN,
    META_WRITTEN,
    KeyLayout,
    etag_md5,
    object_headers,
    pending_value,
    run_value,
)
from pytusd.stores.s3.parts import PartLimitError, plan_concatenation
from pytusd.stores.s3.spool import Spool, TailCache, unlink
from pytusd.stores.s3.state import KnownParts, State


class Committer:
    """Uploads and commits for one store: one bucket, one spool directory, one tail cache."""

    def __init__(
        self,
        client: ObjectStorage,
        keys: KeyLayout,
        *,
        part_size: int,
        max_concurrent_parts: int,
        max_buffered_parts: int,
        temp_dir: str | None,
        tail_cache_bytes: int,
        content_hashes: bool = True,
    ) -> None:
        self.client = client
        self.keys = keys
        self.preferred_part_size = part_size
        self.max_concurrent_parts = max_concurrent_parts
        self.max_buffered_parts = max_buffered_parts
        self.content_hashes = content_hashes
        self.semaphore = asyncio.Semaphore(max_concurrent_parts)
        self.cache = TailCache(tail_cache_bytes)
        self.known = KnownParts()
        self._temp_parent = temp_dir
        self._temp: str | None = None

    def open(self) -> None:
        """Make the spool directory (one per store: a crashed process's is simply left behind)."""
        self._temp = tempfile.mkdtemp(prefix="pytusd-s3-", dir=self._temp_parent)

    def close(self) -> None:
        self.cache.clear()
        self.known = KnownParts()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    @property
    def temp_dir(self) -> str:
        if self._temp is None:
            raise StoreError("S3 store is not started")
        return self._temp

    def new_spool(self) -> Spool:
        return Spool.new(self.temp_dir, hashed=self.content_hashes)

    async def complete(self, state: State, parts: list[Part]) -> None:
        """Turn the multipart upload into the finished object; the commit point of the last write."""
        upload_id = state.info.id
        key = self.keys.data_key(state.info)
        if parts:
            await self.client.complete(key, state.multipart, parts)
        else:
            content_type, disposition = object_headers(state.info)
            await self.client.put(key, b"", 0, EMPTY_MD5, content_type=content_type, content_disposition=disposition)
            if state.multipart:
                await self.client.abort(key, state.multipart)
        self.cache.drop(upload_id)
        self.known.drop(upload_id)
        # Replaced, not deleted: see the package documentation.
        marker = {META_COMPLETE: "1", META_MULTIPART: state.multipart, META_WRITTEN: f"{time.time():.6f}"}
        await self.client.put(self.keys.part_key(upload_id), b"", 0, EMPTY_MD5, metadata=marker)

    async def finish_from_state(self, state: State) -> None:
        """Complete an upload whose bytes are all stored: the incomplete part becomes the last
        part by a copy inside S3 (the last part may be small)."""
        parts = list(state.parts)
        tail = state.tail
        if tail is not None and tail.size:
            number = len(parts) + 1
            key = self.keys.data_key(state.info)
            async with self.semaphore:
                etag = await self.client.upload_part_copy(
                    key, state.multipart, number, self.keys.part_key(state.info.id), 0, tail.size
                )
            parts.append(Part(number, tail.size, etag))
        await self.complete(state, parts)

    async def load_tail(self, state: State) -> Spool:
        """A spool that starts with the incomplete part's bytes (from the cache, else S3)."""
        tail = state.tail
        if tail is None or tail.size == 0:
            return self.new_spool()
        cached = self.cache.take(state.info.id, tail.etag)
        if cached is not None and cached.size == tail.size and (cached.md5 is not None) == self.content_hashes:
            return Spool.reopen(cached.path, cached.size, cached.md5)
        if cached is not None:
            unlink(cached.path)
        spool = self.new_spool()
        try:
            await self.download_into(spool, self.keys.part_key(state.info.id), 0, tail.size)
            if spool.size != tail.size:
                raise StoreError(f"upload {state.info.id}: incomplete part changed while being read")
        except BaseException:
            spool.discard()
            raise
        return spool

    async def download_into(self, spool: Spool, key: str, start: int, end: int) -> None:
        chunks = await self.client.open_range(key, start, end)
        try:
            async for block in chunks:
                spool.write(block)
        finally:
            await chunks.aclose()

    async def upload_part(self, state: State, number: int, spool: Spool, length: int) -> Part:
        """Upload the first ``length`` bytes of ``spool`` as part ``number``, while it still grows if
        need be. Content-MD5 goes along if the bytes are all there when the upload may start;
        else S3's ETag (the part's MD5 on S3 and Swift) is checked after, and a mismatch sends the
        part again from the file, with Content-MD5 (S3 then verifies it, whatever its ETags are)."""
        key = self.keys.data_key(state.info)
        async with self.semaphore:
            complete = spool.closed and spool.size == length
            md5 = await spool.content_md5() if complete else None
            etag = await self.client.upload_part(key, state.multipart, number, spool.stream(length), length, md5)
            if md5 is None and spool.md5 is not None and not _etag_matches(etag, await spool.md5_hex()):
                md5 = await spool.content_md5()
                etag = await self.client.upload_part(key, state.multipart, number, spool.stream(length), length, md5)
        return Part(number, length, etag)

    async def commit_tail(
        self,
        state: State,
        parts: list[Part],
        spool: Spool | None,
        size: int = 0,
        md5: str | None = None,
        *,
        pending: Part | None = None,
        run: int | None = None,
    ) -> ObjectHead:
        """Commit a write: the incomplete part (the first ``size`` bytes of ``spool``, of MD5
        ``md5``; or empty), with the committed parts counted beside it. A spool committed whole
        (``size`` is all of it) moves into the tail cache; the caller keeps any other.

        ``pending`` (its ``etag`` the MD5 in hex) names the next part before it lands, beside an
        empty incomplete part: readers count it once S3 lists it with that size and MD5, so the
        commit may run while the part still uploads. ``run`` (a size) names a run of such parts
        instead, each of that size: readers count them as S3 lists them, one after another, so
        the writes that follow need no commit of their own (see ChunkWriter). Returns the
        commit's name.
        """
        upload_id = state.info.id
        commit = uuid.uuid4().hex
        metadata = {
            META_PARTS: str(len(parts)),
            META_MULTIPART: state.multipart,
            META_WRITTEN: f"{time.time():.6f}",
            META_COMMIT: commit,
        }
        if pending is not None:
            if pending.number != len(parts) + 1 or (spool is not None and size):
                raise ValueError("a pending part follows the committed ones, beside an empty incomplete part")
            metadata[META_PENDING] = pending_value(pending.number, pending.size, pending.etag)
        if run is not None:
            if pending is not None or (spool is not None and size) or run <= 0:
                raise ValueError("a run follows the committed parts, beside an empty incomplete part")
            metadata[META_RUN] = run_value(len(parts) + 1, run)
        key = self.keys.part_key(upload_id)
        self.cache.drop(upload_id)
        self.known.drop(upload_id)
        if spool is None or size == 0:
            size = 0
            etag = await self.client.put(key, b"", 0, EMPTY_MD5, metadata=metadata)
        else:
            etag = await self.client.put(key, spool.stream(size), size, md5, metadata=metadata)
            if spool.closed and size == spool.size:
                self.cache.keep(upload_id, spool, etag)
        if pending is None and run is None:
            # A pending part's list is remembered once it has landed (see state.data_state); a
            # run's grows under the same commit, so it is never remembered.
            self.known.put(upload_id, commit, parts)
        return ObjectHead(size, etag, metadata, time.time())

    async def concatenate(self, target: State, sources: list[str], sizes: list[int]) -> None:
        """Fill the multipart upload of ``target`` with the finished objects ``sources`` (of
        ``sizes`` bytes) in order, and complete it: copied inside S3 where the part limits allow,
        else through a spool (see :func:`~pytusd.stores.s3.parts.plan_concatenation`)."""
        try:
            plan = plan_concatenation(sizes)
        except PartLimitError as exc:
            raise StoreError(str(exc)) from exc
        key = self.keys.data_key(target.info)

        async def make(number: int, pieces: list[Any]) -> Part:
            async with self.semaphore:
                if len(pieces) == 1:
                    piece = pieces[0]
                    etag = await self.client.upload_part_copy(
                        key, target.multipart, number, sources[piece.source], piece.start, piece.end
                    )
                    return Part(number, piece.length, etag)
                # Small partials: S3 cannot append, so these few bytes come through us.
                spool = Spool.new(self.temp_dir)
                try:
                    for piece in pieces:
                        await self.download_into(spool, sources[piece.source], piece.start, piece.end)
                    spool.close_input()
                    etag = await self.client.upload_part(
                        key, target.multipart, number, spool.stream(spool.size), spool.size, await spool.content_md5()
                    )
                    return Part(number, spool.size, etag)
                finally:
                    spool.discard()

        parts = await _all([make(n, pieces) for n, pieces in enumerate(plan, start=1)])
        await self.complete(target, parts)


def _etag_matches(etag: str, md5_hex: str | None) -> bool:
    """Whether an ETag is the MD5 we computed, or not an MD5 at all (then S3 cannot tell us)."""
    stated = etag_md5(etag)
    return stated is None or md5_hex is None or stated == md5_hex


async def _all(jobs: Sequence[Any]) -> list[Any]:
    """Run coroutines together; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]
