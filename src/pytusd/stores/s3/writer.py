"""The part writer: one write_chunk cut into parts that go up while the body still arrives.

This is the hot path of an S3 upload (bench/s3.py measures it). The body is spooled piece by
piece (:mod:`.spool`). A piece whose length is known when it opens (the body's length is known)
and that will be a part starts uploading at once and streams from its spool as the bytes arrive;
any other piece goes up once it is full, or at the end of the body. Like tusd, every piece of at
least S3's minimum part size becomes a part; only a shorter rest (or one that would crowd the
upload's 10,000 parts, see :func:`~pytusd.stores.s3.parts.tail_becomes_part`) stays behind as
the incomplete part. What arrived is committed (see :mod:`.commit`) as it goes, so that it is
counted as it would be on a disk; an all-or-nothing write (a chunk with a checksum) commits only
at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from pytusd.stores.base import DirectSource, StoreError
from pytusd.stores.s3.client import ObjectHead, Part
from pytusd.stores.s3.commit import Committer
from pytusd.stores.s3.layout import META_COMMIT, is_pending_part, pending_part, run_of
from pytusd.stores.s3.parts import MAX_PART_SIZE, MIN_PART_SIZE, PartLimitError, part_size, tail_becomes_part
from pytusd.stores.s3.spool import Spool, SpoolCut, catch_up_hashing
from pytusd.stores.s3.state import State

logger = logging.getLogger("pytusd.s3")

#: While a body arrives, the bytes spooled for the incomplete part are committed at most this often...
COMMIT_EVERY = 0.2
#: ...as long as the spool is this small, else only when the body pauses (for COMMIT_EVERY)...
EAGER_COMMIT_LIMIT = 1024 * 1024
#: ...and as long as all such commits of the request re-upload at most twice what it received,
#: plus this much (see ChunkWriter).
COMMIT_SLACK = 256 * 1024
#: How long a failed write waits for its parts whose body S3 has whole (see ChunkWriter.discard).
SETTLE_WHOLE_FOR = 10.0


class ChunkWriter:
    """One write_chunk: cuts the stream into parts, uploads them while more arrives, commits.

    ``length`` is what the body brings if it arrives whole (None: unknown). At most
    ``max_buffered_parts`` parts of one request are spooled or in flight at a time (the body
    waits for S3 beyond that), and the store-wide semaphore bounds the uploads of all requests.

    ``progressive`` (every write but an all-or-nothing one) also commits while the body arrives:

    * whenever the uploaded parts form a longer unbroken run, the incomplete part is replaced by an
      empty one counting them (the old incomplete part's bytes are inside the first of them);
    * a piece that is not (yet) a part, below the minimum part size, is committed as the
      incomplete part every :data:`COMMIT_EVERY` seconds while it is small
      (:data:`EAGER_COMMIT_LIMIT`), else when the body pauses. S3 cannot append, so each such
      commit uploads the piece again: a budget keeps all of them within twice the bytes the
      request received (plus :data:`COMMIT_SLACK`), so a slow or stuttering client costs at most
      that, and a fast one nothing;
    * a piece of unknown length that reached the minimum part size when the body pauses becomes
      a part there, instead of being uploaded again and again as the incomplete part.

    All these commits and the final one go through :meth:`_advance`, one at a time and only
    forward, so the offset readers see never decreases.
    """

    def __init__(self, io: Committer, state: State, *, progressive: bool, length: int | None = None) -> None:
        self.io = io
        self.state = state
        self.size = state.info.size
        self.length = length
        #: Bytes in parts: committed, or given a part number by this request.
        self.stored = state.stored
        #: The last part number given out.
        self.count = len(state.parts)
        self.received = 0
        #: The piece being filled, its planned length (None: until it is full or the body ends),
        #: and whether it already streams into part number ``self.count``.
        self.piece: Spool | None = None
        self.plan: int | None = None
        self.streaming = False
        self.target = io.preferred_part_size
        self.tail_loaded = False
        #: Whether a name by size the incomplete part holds was looked at (_end_size_name_unless_continued).
        self.name_checked = False
        self.active: dict[int, asyncio.Task[Part]] = {}
        self.spools: dict[int, Spool] = {}
        #: Spools of failed parts the body was still moving into: discarded at the end.
        self.leftovers: list[Spool] = []
        self.results: dict[int, Part] = {}
        self.failure: BaseException | None = None
        #: Parts 1..done_run are in S3.
        self.done_run = len(state.parts)
        #: What S3's incomplete-part object says now: (committed parts, bytes of the incomplete part).
        self.pointer = (len(state.parts), state.tail.size if state.tail is not None else 0)
        #: The incomplete-part object the pointer describes, and whether the upload was completed.
        self.tail_head = state.tail
        self.completed = False
        self.pointer_lock = asyncio.Lock()
        self.progressive = progressive
        self.helpers: list[asyncio.Task[None]] = []
        self.progress: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.last_feed = self.last_commit = loop.time()
        #: Bytes uploaded again by commits of the incomplete part (the budget's account).
        self.recommitted = 0

    # -- the body arrives ------------------------------------------------------------------------

    async def feed(self, chunk: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.last_feed = loop.time()
        self._start_helpers()
        view = memoryview(chunk)
        while view:
            piece = await self._piece_with_room()
            taken = view[: self._limit() - piece.size]
            piece.write(taken)
            view = view[len(taken) :]
            self.received += len(taken)
            self._close_if_full(piece)
        await catch_up_hashing()  # unhashed chunks wait in memory: never too many
        self.last_feed = loop.time()

    async def pour(self, source: DirectSource) -> None:
        """The whole body, moved into the pieces by the serving layer (splice) instead of read here.

        Each call moves at most what the current piece still takes, so pieces, plans and the
        bound on buffered parts work as with :meth:`feed`.
        """
        loop = asyncio.get_running_loop()
        self._start_helpers()
        while True:
            piece = await self._piece_with_room()

            def moved(count: int, piece: Spool = piece) -> None:
                # Counted as they land, not when the call returns: a stalled body's bytes are
                # committed while it waits (the budget of such commits counts received bytes).
                piece.grew(count)
                self.received += count
                self.last_feed = loop.time()

            room = self._limit() - piece.size
            os.lseek(piece.fd, piece.size, os.SEEK_SET)
            count = await source.write_into(piece.fd, room, moved)
            self._close_if_full(piece)
            await catch_up_hashing()
            if count < room:
                return  # the body ended (whole, or cut short: the service tells which)

    def _start_helpers(self) -> None:
        if self.progressive and not self.helpers:
            self.helpers.append(asyncio.get_running_loop().create_task(self._commit_piece()))

    async def _piece_with_room(self) -> Spool:
        """The piece more bytes go into: the current one, or a new one once it is full."""
        while True:
            self._raise_failure()  # a part failed: the body goes no further
            if self.piece is None:
                await self._open_piece()
            piece = self.piece
            assert piece is not None
            if piece.size < self._limit():
                return piece
            # Only a planned rest that was to stay behind is full here, yet more comes: the body
            # is longer than announced. Its length is unknown from here on.
            self.plan = self.length = None

    def _close_if_full(self, piece: Spool) -> None:
        """A piece that reached its plan (or a whole part) is a part, unless it is a planned rest."""
        if piece is self.piece and piece.size >= self._limit() and (self.streaming or self.plan is None):
            self._close_piece()

    def _limit(self) -> int:
        """Where the current piece ends: its plan, else a full part."""
        return self.plan if self.plan is not None else self.target

    async def _open_piece(self) -> None:
        await self._make_room()
        try:
            self.target = part_size(self.size, self.stored, self.count, self.io.preferred_part_size)
        except PartLimitError as exc:
            raise StoreError(str(exc)) from exc
        if not self.name_checked:
            self.name_checked = True
            await self._end_size_name_unless_continued()
        if not self.tail_loaded:
            self.tail_loaded = True
            self.piece = await self.io.load_tail(self.state)
        else:
            self.piece = self.io.new_spool()
        self.plan, self.streaming = self._plan(self.piece.size), False
        # A last part below the minimum waits for the body's end instead: while it arrives, its
        # bytes can be committed as the incomplete part, so a slow client's progress shows.
        if self.plan is not None and self.plan >= MIN_PART_SIZE and self._is_part(self.plan):
            self._start_part(self.piece, self.plan)
            self.streaming = True

    def _standing_run(self) -> tuple[int, int] | None:
        """The run the incomplete part names now (first part, size), if any."""
        head = self.tail_head
        return run_of(head.metadata) if head is not None and head.size == 0 else None

    def _named_by_size(self) -> bool:
        """Whether the incomplete part names parts by their size alone: a run, or a pending part
        named without an MD5 that has not landed (a try that failed, or an earlier version's)."""
        head = self.tail_head
        if head is None or head.size:
            return False
        named = pending_part(head.metadata, len(self.state.parts))
        return run_of(head.metadata) is not None or (named is not None and not named[1])

    async def _end_size_name_unless_continued(self) -> None:
        """Before any part of this write starts: end a name by size unless this write may go on with it.

        Readers count a part S3 lists under such a name at that size, so while it stands, only
        parts that are the client's bytes at their place, whatever happens next, may go up: a lone
        part of a clean upload (nothing listed above the counted parts, no failed write here of
        late), whose body is its part, goes on with a run. Any other write (a checksummed chunk
        that may yet be refused, parts that may land out of order and some not at all, an upload
        with a leftover or a named part that never landed) first commits the counted parts without
        the name, one request before its first. So does the write of the last part: readers must
        not find every byte there before it has completed the upload (a reader would complete it
        too, see S3Store._read_unfinished).
        """
        if not self._named_by_size():
            return
        plan = self._plan(0)
        if (
            self.progressive
            and self.state.clean
            and self.received == 0
            and self.pointer[1] == 0
            and plan is not None
            and plan == self.length
            and (self.size is None or self.stored + plan < self.size)
            and self._is_part(plan)
        ):
            return
        async with self.pointer_lock:
            self.tail_head = await self.io.commit_tail(self.state, self._parts(self.pointer[0]), None)
            self.last_commit = asyncio.get_running_loop().time()

    def _plan(self, start: int) -> int | None:
        """The length of a piece that starts with ``start`` bytes, if the body's length tells it.

        A full part, unless the rest of the body is at most a part and a minimum part more: then
        all of it, rather than a part and a small rest.
        """
        if self.length is None or self.received >= self.length:
            return None
        rest = start + self.length - self.received
        if rest > self.target + MIN_PART_SIZE or rest > MAX_PART_SIZE:
            return self.target
        return rest

    def _is_part(self, length: int) -> bool:
        """Whether ``length`` bytes at the end of what is stored may go up as a part now."""
        if self.size is not None and self.stored + length == self.size:
            return True  # the last part may be of any size
        return tail_becomes_part(length, self.size, self.stored, self.count, self.io.preferred_part_size)

    def _close_piece(self) -> None:
        """The current piece is full (its plan, or a whole part): it is a part."""
        piece, self.piece = self.piece, None
        assert piece is not None
        piece.close_input()
        if not self.streaming:
            self._start_part(piece, piece.size)

    def _start_part(self, piece: Spool, length: int) -> None:
        self.count += 1
        self.stored += length
        number = self.count
        task = asyncio.get_running_loop().create_task(self.io.upload_part(self.state, number, piece, length))
        self.active[number] = task
        self.spools[number] = piece
        task.add_done_callback(lambda done: self._part_done(number, done))

    def _take_back(self, number: int) -> Spool:
        """Part ``number`` (the last given out) will not be: its piece was cut short."""
        assert number == self.count
        task = self.active.pop(number)
        task.cancel()
        piece = self.spools.pop(number)
        self.count -= 1
        self.stored -= self.plan or 0
        return piece

    async def _make_room(self) -> None:
        while True:
            self._raise_failure()
            if len(self.active) < self.io.max_buffered_parts:
                return
            await asyncio.wait(set(self.active.values()), return_when=asyncio.FIRST_COMPLETED)

    def _raise_failure(self) -> None:
        exc = self.failure
        if exc is not None:
            raise exc if isinstance(exc, StoreError) else StoreError(str(exc))

    def _part_done(self, number: int, task: asyncio.Task[Part]) -> None:
        if self.active.get(number) is not task:
            return  # taken back
        del self.active[number]
        spool = self.spools.pop(number, None)
        if spool is not None and spool is self.piece:
            # Its part failed while the body arrives: the body may be moving into it right now
            # (pour), so its file stays open until discard().
            self.leftovers.append(spool)
        elif spool is not None:
            spool.discard()
        if task.cancelled():
            self.failure = self.failure or StoreError("part upload cancelled")
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

    # -- commits while the body arrives ------------------------------------------------------------

    def _parts(self, count: int) -> list[Part]:
        first = len(self.state.parts) + 1
        return list(self.state.parts) + [self.results[n] for n in range(first, count + 1)]

    async def _commit_parts(self) -> None:
        if self._standing_run() is not None:
            return  # the run counts this write's part as it lands (see _end_size_name_unless_continued)
        while not self.closing.is_set() and self.failure is None and self.done_run > self.pointer[0]:
            try:
                await self._advance(self.done_run, None, early=True)
            except StoreError as exc:
                # Only an early commit failed: the final one decides (and reports S3's trouble).
                logger.warning("upload %s: could not commit parts so far: %s", self.state.info.id, exc)
                return

    async def _commit_piece(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), COMMIT_EVERY / 2)
                return
            piece, now = self.piece, loop.time()
            if (
                piece is None
                or self.streaming
                or now - self.last_commit < COMMIT_EVERY
                or self.done_run != self.count  # the incomplete part follows every part before it
                or self.failure is not None
            ):
                continue
            paused = now - self.last_feed >= COMMIT_EVERY
            if piece.size >= MIN_PART_SIZE:
                if paused and self.plan is None and self._is_part(piece.size):
                    self.piece = None
                    piece.close_input()
                    self._start_part(piece, piece.size)
                continue
            size = piece.size
            if (
                (self.count, size) <= self.pointer
                or (size > EAGER_COMMIT_LIMIT and not paused)
                or self.recommitted + size > 2 * self.received + COMMIT_SLACK
            ):
                continue
            self.recommitted += size
            count = self.count  # the piece may become a part meanwhile: commit what is true now
            try:
                # Asked right after reading the size: the digest covers exactly those bytes.
                md5 = await piece.content_md5()
                await self._advance(count, piece, size, md5, early=True)
            except StoreError as exc:
                logger.warning("upload %s: could not commit the bytes so far: %s", self.state.info.id, exc)

    async def _advance(
        self, count: int, tail: Spool | None, size: int = 0, md5: str | None = None, *, early: bool = False
    ) -> None:
        """Point S3's incomplete part at ``count`` parts and the first ``size`` bytes of ``tail``,
        if that is further than it points now. A tail committed whole moves into the tail cache.
        ``early`` (a commit while the body arrives) is dropped once the write closes: the final
        commit follows, and may already be under way beside a part (_commit_while_landing)."""
        async with self.pointer_lock:
            if (count, size) <= self.pointer or (early and self.closing.is_set()):
                return
            self.tail_head = await self.io.commit_tail(self.state, self._parts(count), tail, size, md5)
            self.pointer = (count, size)
            self.last_commit = asyncio.get_running_loop().time()

    # -- the end ----------------------------------------------------------------------------------

    async def _settle(self) -> None:
        """Let parts in flight finish and the early commits stop before the final commit."""
        self.closing.set()
        if self.active:
            await asyncio.wait(set(self.active.values()))
        helpers = [t for t in self.helpers if not t.done()]
        if helpers:
            await asyncio.wait(helpers)

    def _end_piece(self) -> Spool | None:
        """The body ended: the current piece becomes a part, or the rest for the incomplete part."""
        piece, self.piece = self.piece, None
        if piece is None:
            return None
        piece.close_input()
        if piece.size == 0:
            piece.discard()
            return None
        if self.streaming:
            if piece.size == self.plan:
                return None  # it is going up whole
            self._raise_failure()  # its part failed already: nothing to take back, the write fails
            piece = self._take_back(self.count)  # cut short: it goes up below, or stays behind
        if self._is_part(piece.size):
            self._start_part(piece, piece.size)
            return None
        return piece

    async def commit(self) -> int:
        """Make everything received part of the upload; returns the bytes received."""
        io, state = self.io, self.state
        if self.received == 0:
            if state.full:
                await io.finish_from_state(state)
            return 0
        rest = self._end_piece()
        try:
            lone = self._lone_part() if rest is None else None
            if lone is not None and self._continues_run(*lone):
                await self._land_in_run(lone[0])
            elif lone is not None:
                await self._commit_while_landing(*lone)
            else:
                await self._settle()
            self._raise_failure()
            parts = self._parts(self.count)
            if self.size is not None and self.stored == self.size and rest is None:
                await io.complete(state, parts)
                self.completed = True
            elif rest is not None:
                await self._advance(len(parts), rest, rest.size, await rest.content_md5())
            else:
                await self._advance(len(parts), None)
        finally:
            if rest is not None and rest.fd >= 0:
                rest.discard()
        return self.received

    def left_behind(self) -> State | None:
        """After :meth:`commit`: the upload as S3 now holds it, for the next write of this process
        to start from (see S3Store.get_info_to_write); None once the upload is complete."""
        if self.completed or (self.received == 0 and self.state.full):
            return None
        parts = self._parts(self.pointer[0])
        # Every part this write started has landed and counts: what was clean stays so.
        return State(self.state.info, self.state.multipart, None, parts, self.tail_head, self.state.clean)

    def _lone_part(self) -> tuple[int, int, Spool] | None:
        """The one part this write adds, still uploading, if the final commit may name it first.

        That is the common chunked PATCH (one body, one part, nothing left over) and it saves the
        commit's round trip after the part: see :meth:`_commit_while_landing`. A reader must tell
        the part from anything else under its number: by its MD5, or, without content hashes, by
        there being nothing else (State.clean). Only beside an empty incomplete part, and not for
        the part that completes the upload (completing it is that write's commit).
        """
        number = len(self.state.parts) + 1
        length = self.stored - self.state.stored
        spool = self.spools.get(number)
        if (
            not self.progressive
            or self.count != number
            or set(self.active) != {number}
            or self.pointer != (number - 1, 0)
            or (self.size is not None and self.stored == self.size)
            or spool is None
            or (spool.md5 is None and not self.state.clean)
            or not spool.closed
            or spool.size != length
        ):
            return None
        return number, length, spool

    def _continues_run(self, number: int, length: int, spool: Spool) -> bool:
        """Whether the lone part ``number`` is the next of the standing run: then it needs no commit."""
        run = self._standing_run()
        return (
            run is not None
            and run[0] <= number
            and run[1] == length
            and self.pointer == (number - 1, 0)
            and self.state.clean
        )

    async def _land_in_run(self, number: int) -> None:
        """Wait for the run's next part to land: S3 listing it is what makes readers count it."""
        await self._settle()
        async with self.pointer_lock:
            if number in self.results and self.pointer == (number - 1, 0):
                self.pointer = (number, 0)
                self.last_commit = asyncio.get_running_loop().time()

    async def _commit_while_landing(self, number: int, length: int, spool: Spool) -> None:
        """Commit part ``number`` as pending while it uploads, and let it count once it has landed.

        On a clean upload (nothing listed above the counted parts) the incomplete part names a run
        of parts of this one's size from its number on (so the writes after it need no commit:
        :meth:`_continues_run`); else the part's number, size and MD5. Readers count the part once
        S3 lists it so (state.data_state). Both orders are states the upload was in: before the
        part lands, the offset is the committed parts'; after, theirs and this part's. The answer
        still waits for both. If a pending part's ETag is not its MD5 (some S3 encryption
        settings), readers could never count it, so an ordinary commit follows.
        """
        run = length if self.state.clean else None
        md5_hex = "" if run is not None else await spool.md5_hex() or ""  # none: see _lone_part
        marker: asyncio.Task[ObjectHead] | None = None
        async with self.pointer_lock:
            if self.pointer == (number - 1, 0):
                before = self._parts(number - 1)
                pending = None if run is not None else Part(number, length, md5_hex)
                marker = asyncio.get_running_loop().create_task(
                    self.io.commit_tail(self.state, before, None, pending=pending, run=run)
                )
        try:
            await self._settle()
        finally:
            if marker is not None:
                # Even when cancelled: a commit that landed after the lock moved on could undo a
                # later one.
                await _outlast(marker)
        if marker is None or marker.cancelled() or marker.exception() is not None:
            if marker is not None and not marker.cancelled():
                logger.warning("upload %s: could not name part %d before it landed: %s",
                               self.state.info.id, number, marker.exception())  # fmt: skip
            return  # the ordinary commit follows
        landed = self.results.get(number)
        if landed is None or not is_pending_part(landed.size, landed.etag, (length, md5_hex)):
            return
        async with self.pointer_lock:
            if self.pointer == (number - 1, 0):
                self.tail_head = marker.result()
                if run is None:
                    self.io.known.put(self.state.info.id, self.tail_head.metadata[META_COMMIT], self._parts(number))
                self.pointer = (number, 0)
                self.last_commit = asyncio.get_running_loop().time()

    async def discard(self) -> None:
        """Drop what was not committed: let land the parts whose body is whole, cancel the others,
        delete spool files.

        A part upload cancelled after S3 had its whole body could still land later, when another
        write (of another server, that does not know of this failure) may have put the client's
        bytes under its number: a refused checksummed chunk's part would then replace them. Let
        land now (for at most :data:`SETTLE_WHOLE_FOR`), it is only a part above the counted ones,
        which the next write finds. A part whose body has not all been handed to S3 yet (waiting
        for the body or for its turn) cannot land if cancelled: cancelled at once.
        """
        self.closing.set()
        whole = [
            task
            for n, task in self.active.items()
            if (s := self.spools.get(n)) is not None and s.closed and s.sent >= s.size > 0
        ]
        for task in list(self.active.values()):
            if task not in whole:
                task.cancel()
        cancelled = False
        if whole:
            try:
                await asyncio.wait(whole, timeout=SETTLE_WHOLE_FOR)
            except asyncio.CancelledError:
                cancelled = True  # the spool files still go
        for task in list(self.active.values()):
            task.cancel()
        await self._settle()
        for spool in [*self.spools.values(), *self.leftovers]:
            spool.discard()
        self.spools.clear()
        self.leftovers.clear()
        if self.piece is not None:
            self.piece.discard()
            self.piece = None
        if cancelled:
            raise asyncio.CancelledError


async def _outlast(task: asyncio.Task[ObjectHead]) -> None:
    """Wait until ``task`` is done, even if this task is cancelled meanwhile (then re-raised)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


__all__ = ["ChunkWriter", "SpoolCut"]
