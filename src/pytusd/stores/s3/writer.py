"""The part writer: one write_chunk cut into parts that go up while the body still arrives.

This is the hot path of an S3 upload (the benchmark measures it): bytes are spooled, a full
part is uploaded in a task of its own while the next one fills, and what arrived is committed
(see :mod:`pytusd.stores.s3.commit`) as it goes, so that it is counted as it would be on a disk.
An all-or-nothing write (a chunk with a checksum) commits only at its end instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pytusd.stores.base import StoreError
from pytusd.stores.s3.client import Part
from pytusd.stores.s3.commit import Committer
from pytusd.stores.s3.parts import PartLimitError, part_size, tail_becomes_part
from pytusd.stores.s3.spool import Spool, snapshot_of
from pytusd.stores.s3.state import State

logger = logging.getLogger("pytusd.s3")

#: While a body arrives, the bytes spooled for the next part are committed at most this often...
COMMIT_EVERY = 0.2
#: ...as long as the spool is this small, else only when the body pauses (for COMMIT_EVERY)...
EAGER_COMMIT_LIMIT = 1024 * 1024
#: ...and as long as all such commits of the request re-upload at most twice what it received,
#: plus this much (see ChunkWriter).
COMMIT_SLACK = 256 * 1024


class ChunkWriter:
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

    def __init__(self, io: Committer, state: State, *, progressive: bool) -> None:
        self.io = io
        self.state = state
        self.size = state.info.size
        #: Bytes in parts, committed or uploaded by this request.
        self.stored = state.stored
        #: Parts committed or uploaded by this request (the last part number used).
        self.count = len(state.parts)
        self.received = 0
        self.spool: Spool | None = None
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
            self.target = part_size(self.size, self.stored, self.count, self.io.preferred_part_size)
        except PartLimitError as exc:
            raise StoreError(str(exc)) from exc
        if not self.tail_loaded:
            self.tail_loaded = True
            self.spool = await self.io.load_tail(self.state)
        else:
            self.spool = Spool.new(self.io.temp_dir)

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
        task = asyncio.get_running_loop().create_task(self.io.upload_spool(self.state, self.count, spool))
        self.active.add(task)
        task.add_done_callback(self._part_done)

    async def _make_room(self) -> None:
        while True:
            self._raise_failure()
            if len(self.active) < self.io.max_concurrent_parts:
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
                snapshot = await snapshot_of(spool, size, self.io.temp_dir)
            except (OSError, ValueError, StoreError):
                continue  # the spool filled up and went up as a part meanwhile: nothing to do
            self.recommitted += size
            try:
                await self._advance(count, snapshot)
            except StoreError as exc:
                logger.warning("upload %s: could not commit the bytes so far: %s", self.state.info.id, exc)

    async def _advance(self, count: int, tail: Spool | None) -> None:
        """Point S3's incomplete part at ``count`` parts and ``tail``, if that is further than it
        points now; takes ownership of ``tail``."""
        size = tail.size if tail is not None else 0
        async with self.pointer_lock:
            if (count, size) <= self.pointer:
                if tail is not None:
                    tail.discard()
                return
            await self.io.commit_tail(self.state, count, tail)
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
        io, state = self.io, self.state
        if self.received == 0:
            if state.full:
                await io.finish_from_state(state)
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
                final or tail_becomes_part(rest, self.size, self.stored, self.count, io.preferred_part_size)
            ):
                last, spool = spool, None
                parts.append(await self._upload_last(last))
            if final:
                await io.complete(state, parts)
            else:
                tail, spool = spool, None
                await self._advance(len(parts), tail)  # the tail cache owns the spool now
        finally:
            if spool is not None:
                spool.discard()
        return self.received

    async def _upload_last(self, spool: Spool) -> Part:
        self.count += 1
        self.stored += spool.size
        return await self.io.upload_spool(self.state, self.count, spool)

    async def discard(self) -> None:
        """Drop what was not committed: cancel uploads in flight, delete spool files."""
        self.closing.set()
        for task in list(self.active):
            task.cancel()
        await self._settle()
        if self.spool is not None:
            self.spool.discard()
            self.spool = None
