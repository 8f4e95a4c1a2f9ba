"""The storage contract, after tusd's DataStore.

A store keeps uploads and their info. It never sees HTTP: the handler validates offsets, sizes and
locks before it calls a store, and holds the upload's lock around every call that changes it.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

from pytusd.info import UploadInfo
from pytusd.metrics.recorder import Recorder


class StoreError(Exception):
    """A store could not do what was asked; the handler answers 5xx without details."""


class StoreUnavailable(StoreError):
    """The storage service cannot be reached or is overloaded right now (S3: connection errors,
    timeouts, 5xx and SlowDown after the client's own retries). Nothing stored is lost: the
    service answers 503 with Retry-After, and the client resumes from the stored offset."""


class UploadNotFound(StoreError):
    """No upload with that ID (never created, terminated or swept)."""


class UploadExists(StoreError):
    """create() was given an ID that is taken (hooks may choose IDs)."""


class InvalidStorage(ValueError):
    """create() was given ``Storage`` (chosen by a pre-create hook) that this store cannot honour:
    a path outside the store, or one that is taken (``status`` 409). The client gets a 4xx."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class UploadTooLarge(StoreError):
    """The upload is larger than this store can hold (S3: 5 TiB per object); the service answers 413."""


class DirectSource(abc.ABC):
    """A stream that can also write itself into a file descriptor, without passing through Python.

    A store that writes to a file may hand its descriptor to :meth:`write_into` instead of
    iterating (pytusd's serving layer then moves the bytes with ``splice(2)``); any other store
    iterates it as usual. The handler only offers one where no byte needs looking at: no checksum
    to compute, and a body whose length is known and fits the upload.
    """

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        """Write every remaining byte (at most ``limit``) at ``fd``'s position (advancing it);
        return how many. ``moved(n)`` is called as each ``n`` bytes are in the file.

        Fewer than ``limit`` bytes means the body ended. Bytes written before an early end (the
        body was stopped, or the client left) stay written and are counted; errors of ``fd``
        itself propagate.
        """


class DataStore(abc.ABC):
    """Everything a store must do. Optional abilities are announced by :attr:`features`.

    Streams are async iterables of ``bytes``: a store consumes them chunk by chunk and never holds
    a whole request body in memory.
    """

    #: Optional abilities: "termination", "concatenation", "creation-defer-length", "download".
    features: frozenset[str] = frozenset()

    async def start(self) -> None:  # noqa: B027 - optional hook, most stores need nothing
        """Open connections or directories; called once before the first request."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` opened."""

    def record_requests(self, metrics: Recorder) -> None:  # noqa: B027 - optional hook
        """A store that calls a service (S3, GCS, Azure) reports each call's duration to ``metrics``."""

    @abc.abstractmethod
    async def create(self, info: UploadInfo) -> UploadInfo:
        """Create an empty upload from ``info`` (id chosen by the caller); return it as stored."""

    @abc.abstractmethod
    async def get_info(self, upload_id: str) -> UploadInfo:
        """The upload's info with ``offset`` taken from the data held. Raises UploadNotFound."""

    async def get_info_to_write(self, upload_id: str, *, held_here_last: bool = False) -> UploadInfo:
        """:meth:`get_info` for a request that holds the upload's lock and writes next.

        ``held_here_last``: the lock says that no other process held it since this process last
        released it, so whatever this store's own last write of the upload left is still what
        its storage holds. A store that remembers that may answer without asking its storage
        (S3: two requests less per PATCH); the default asks, as :meth:`get_info` does.
        """
        return await self.get_info(upload_id)

    def forget_read_to_write(self, upload_id: str) -> None:  # noqa: B027 - optional hook
        """The lock :meth:`get_info_to_write` was called under is about to be released.

        A store that keeps that read for the write that follows must drop it here: once the lock
        is gone another process may write, and a later write of this process (one that reads
        nothing first, as after a creation) must not start from it.
        """

    @abc.abstractmethod
    async def write_chunk(
        self,
        upload_id: str,
        offset: int,
        source: AsyncIterable[bytes],
        *,
        all_or_nothing: bool = False,
        length: int | None = None,
    ) -> int:
        """Append what ``source`` yields at ``offset`` (the current offset); return bytes written.

        If ``source`` raises, the bytes it yielded before are kept (the client may resume after
        them) and the exception propagates, unless ``all_or_nothing``: then none of them become part
        of the upload, in storage or in a later :meth:`get_info` — this is how a chunk whose
        checksum fails is discarded. A store makes the bytes durable before it returns.
        ``source`` may be a :class:`DirectSource` (never with ``all_or_nothing``). ``length``, if
        known, is how many bytes ``source`` yields if it runs to its end (it may end earlier): a
        store may plan by it (S3 sends a part while its bytes arrive), never trust it blindly.
        """

    @abc.abstractmethod
    async def update_info(self, info: UploadInfo) -> None:
        """Persist changed info fields (metadata, storage, pending finals, a declared size)."""

    async def declare_length(self, upload_id: str, length: int) -> None:
        """Set the length of a deferred-length upload (creation-defer-length)."""
        info = await self.get_info(upload_id)
        info.size = length
        await self.update_info(info)

    async def add_pending_final(self, partial_id: str, final_id: str) -> None:
        """Record that ``final_id`` waits for the partial ``partial_id`` (concatenation-unfinished).

        Called without the partial's lock (taking it would stop the partial's own upload), so it
        must not undo a concurrent info change such as a declared length. This default re-reads
        just before writing, which narrows the window; stores override it with an atomic append.
        """
        info = await self.get_info(partial_id)
        if final_id not in info.pending_finals:
            info.pending_finals.append(final_id)
            await self.update_info(info)

    @abc.abstractmethod
    def read(self, upload_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of the upload (``end`` None: to the offset)."""

    @abc.abstractmethod
    async def terminate(self, upload_id: str) -> None:
        """Delete the upload and its info. Raises UploadNotFound."""

    @abc.abstractmethod
    async def concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> None:
        """Fill ``final`` with the partials' bytes in order; all-or-nothing."""

    @abc.abstractmethod
    def list_uploads(self) -> AsyncIterator[str]:
        """Every upload ID held (the expiration sweeper walks this)."""

    async def last_write_time(self, upload_id: str) -> float:
        """When data last arrived (or creation); expiration counts from it."""
        return (await self.get_info(upload_id)).created_at
