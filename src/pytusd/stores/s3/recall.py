"""What an S3Store remembers of its uploads between calls: only ever a way to skip S3 requests.

Two memories, each used under rules that make it as good as a read:

* **the last read** (:meth:`Recall.read`): the handler reads an upload under its lock right
  before it writes, so the write may start from that state instead of reading again
  (:meth:`Recall.handoff`), if it is recent and at the write's offset;
* **the last write** (:meth:`Recall.wrote`): what this process's last write of an upload left in
  S3. A write that follows may start from it when the lock says no other process held it since
  (``held_here_last``); every other change the store makes forgets it (:meth:`Recall.forget`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from pytusd.info import UploadInfo
from pytusd.stores.s3.layout import META_COMMIT
from pytusd.stores.s3.state import State

#: How old a state read by get_info may be to stand in for write_chunk's own read (see handoff).
HANDOFF_FOR = 1.0
#: Reads kept before the old ones are swept.
MAX_READS = 1000
#: Uploads whose last write here is remembered, and the parts their states may hold in all
#: (10,000 parts each at most); beyond either, the least recently written are read again.
MAX_WRITES = 10_000
MAX_WRITTEN_PARTS = 200_000
#: How long after a failed write here its uploads are not taken as clean (State.clean): a part
#: upload it cancelled after sending the whole body may still land, S3 taking its time.
UNSETTLED_FOR = 60.0
#: Failed writes remembered before those older than UNSETTLED_FOR are swept.
MAX_FAILED = 1000


class Recall:
    """The two memories of one store; ``now`` is always the event loop's clock."""

    def __init__(self) -> None:
        #: upload ID -> (when the read started, the state it found)
        self._reads: dict[str, tuple[float, State]] = {}
        #: upload ID -> what this process's last write of it left in S3
        self._writes: OrderedDict[str, State] = OrderedDict()
        self._parts_held = 0
        #: upload ID -> when a write of it last failed here
        self._failed: dict[str, float] = {}
        #: upload ID -> Unix time its last write here that wrote anything ended
        self._ended: dict[str, float] = {}
        #: upload ID -> loop time the lock said no other process wrote since (until it is released)
        self._vouched: dict[str, float] = {}

    def read(self, upload_id: str, started: float, state: State) -> None:
        """Keep the state of the read that started last (a HEAD that started earlier and ends
        later never replaces a PATCH's own read). A read from S3 that finds anything but what
        this process's last write left forgets that write: another process wrote since (and the
        lock will vouch for us again after our next release), or a write of ours is under way."""
        last = self._writes.get(upload_id)
        if last is not None and not _same(last, state):
            self.forget_write(upload_id)
        known = self._reads.get(upload_id)
        if known is not None and known[0] > started:
            return
        if len(self._reads) > MAX_READS:
            cutoff = started - HANDOFF_FOR
            self._reads = {k: v for k, v in self._reads.items() if v[0] >= cutoff}
        self._reads[upload_id] = (started, _copy(state))

    def recent_info(self, upload_id: str, now: float) -> UploadInfo | None:
        """The info of a read made just now (a GET reads the upload before the data)."""
        fresh = self._reads.get(upload_id)
        if fresh is not None and now - fresh[0] <= HANDOFF_FOR:
            return fresh[1].info
        return None

    def handoff(self, upload_id: str, offset: int, now: float) -> State | None:
        """The state a write at ``offset`` may start from without reading, used once: the last
        read, if it is recent, of an upload in progress, and at that offset."""
        fresh = self._reads.pop(upload_id, None)
        if fresh is None:
            return None
        started, state = fresh
        if now - started <= HANDOFF_FOR and state.completed is None and not state.full and state.offset == offset:
            return state
        return None

    def last_write(self, upload_id: str) -> State | None:
        """What this process's last write of the upload left, if remembered (never a partial's:
        finals are added to partials without their lock)."""
        state = self._writes.get(upload_id)
        if state is not None:
            self._writes.move_to_end(upload_id)
        return state

    def wrote(self, upload_id: str, state: State | None, ended: float | None = None) -> None:
        """A write ended: remember what it left (None: nothing worth remembering), and the Unix
        time it ended if it wrote anything (``ended``; None: the last write's time stays)."""
        self.forget_write(upload_id)
        if ended is not None:
            self._ended.pop(upload_id, None)  # re-inserted last: the oldest go first
            self._ended[upload_id] = ended
            while len(self._ended) > MAX_WRITES:
                del self._ended[next(iter(self._ended))]
        if state is None or state.info.is_partial:
            return
        self._writes[upload_id] = _copy(state)
        self._parts_held += len(state.parts)
        while len(self._writes) > MAX_WRITES or self._parts_held > MAX_WRITTEN_PARTS:
            _, old = self._writes.popitem(last=False)
            self._parts_held -= len(old.parts)

    def vouched(self, upload_id: str, now: float) -> None:
        """The lock said no other process wrote since this process's last write (a write follows)."""
        if upload_id in self._ended and upload_id in self._writes:
            self._vouched[upload_id] = now

    def ended(self, upload_id: str) -> float:
        """When this process's last write of the upload that it remembers ended (0: unknown)."""
        return self._ended.get(upload_id, 0.0)

    def unvouch(self, upload_id: str) -> None:
        """The lock that vouched is released: its word does not outlive it."""
        self._vouched.pop(upload_id, None)

    def last_written(self, upload_id: str, now: float) -> float | None:
        """When the upload was last written, if the lock vouched for this process's last write just
        now (expiry asks right after the handler's read): its end, without asking S3. Used once."""
        when = self._vouched.pop(upload_id, None)
        if when is None or now - when > HANDOFF_FOR:
            return None
        return self._ended.get(upload_id)

    def failed(self, upload_id: str, now: float) -> None:
        """A write failed: parts it started may land for a while yet (see :meth:`unsettled`)."""
        if len(self._failed) > MAX_FAILED:
            self._failed = {k: v for k, v in self._failed.items() if now - v < UNSETTLED_FOR}
        self._failed[upload_id] = now

    def unsettled(self, upload_id: str, now: float) -> bool:
        """Whether a write of the upload failed here within :data:`UNSETTLED_FOR`."""
        when = self._failed.get(upload_id)
        return when is not None and now - when < UNSETTLED_FOR

    def forget(self, upload_id: str) -> None:
        """The upload is about to change: both memories of it go."""
        self._reads.pop(upload_id, None)
        self.forget_write(upload_id)
        self._ended.pop(upload_id, None)

    def forget_read(self, upload_id: str) -> None:
        self._reads.pop(upload_id, None)

    def forget_write(self, upload_id: str) -> None:
        """What the last write left is no longer known to be true (when it ended still is)."""
        self.unvouch(upload_id)
        old = self._writes.pop(upload_id, None)
        if old is not None:
            self._parts_held -= len(old.parts)


def _same(remembered: State, read: State) -> bool:
    """Whether a read found the upload exactly as a remembered write left it: the same commit of
    the incomplete part (each commit has a random name) and the same offset, unfinished."""
    return (
        read.completed is None
        and read.offset == remembered.offset
        and read.tail is not None
        and remembered.tail is not None
        and read.tail.metadata.get(META_COMMIT) == remembered.tail.metadata.get(META_COMMIT)
    )


def _copy(state: State) -> State:
    """A copy callers may change (the upload service changes the infos it is given)."""
    info = dataclasses.replace(
        state.info,
        metadata=dict(state.info.metadata),
        storage=dict(state.info.storage),
        partial_uploads=list(state.info.partial_uploads),
        pending_finals=list(state.info.pending_finals),
    )
    return dataclasses.replace(state, info=info, parts=list(state.parts))
