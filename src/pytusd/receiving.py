"""A request body on its way into a store: cut at the upload's limit, digests checked as it passes.

Both protocols hand the upload service a body and, when the client sent digests, a
:class:`Verifier`; the service wraps the body with :func:`guarded` (or, with no byte to look at,
lets it write itself through :class:`DirectBody`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from pytusd.info import UploadInfo
from pytusd.messages import Body
from pytusd.protocol.checksum import ALGORITHMS, Digest
from pytusd.protocol.errors import HTTPError
from pytusd.protocol.headers import parse_checksum
from pytusd.stores.base import DataStore, DirectSource, StoreError, UploadNotFound

logger = logging.getLogger("pytusd")


class TooLarge(Exception):
    """The body went past the upload's limit; what came before the limit is kept."""


class ChecksumMismatch(Exception):
    """A digest did not match (or the chunk was cut short): the chunk is discarded."""


class Verifier:
    """Checks digests of a chunk as it streams; ``finish`` raises if one does not match.

    A chunk with a verifier is stored all-or-nothing, so a mismatch discards it.
    """

    __slots__ = ("_body", "_checks", "_trailer")

    def __init__(self, body: Body) -> None:
        self._body = body
        #: (digest being computed, expected value, error to raise on mismatch)
        self._checks: list[tuple[Digest, bytes, HTTPError | None]] = []
        self._trailer: dict[str, Digest] | None = None

    def expect(self, digest: Digest, expected: bytes, error: HTTPError | None = None) -> None:
        """Compare ``digest`` (possibly seeded with earlier data) to ``expected`` at the end.

        ``error`` is what a mismatch answers; None: :class:`ChecksumMismatch` (tus' 460).
        """
        self._checks.append((digest, expected, error))

    def expect_checksum_trailer(self) -> None:
        # The algorithm is named only at the end: compute every one we offer.
        self._trailer = {name: factory() for name, factory in ALGORITHMS.items()}

    def update(self, chunk: bytes) -> None:
        for digest, _, _ in self._checks:
            digest.update(chunk)
        if self._trailer is not None:
            for digest in self._trailer.values():
                digest.update(chunk)

    def finish(self) -> None:
        body = self._body
        if body.stopped is not None or body.disconnected:
            raise ChecksumMismatch  # an incomplete chunk cannot match; discard it
        for digest, expected, error in self._checks:
            if digest.digest() != expected:
                raise error if error is not None else ChecksumMismatch
        if self._trailer is not None:
            value = (body.trailers() or {}).get("upload-checksum")
            if value is None:
                raise HTTPError(400, "announced Upload-Checksum trailer was not sent")
            checksum = parse_checksum(value, ALGORITHMS)
            if self._trailer[checksum.algorithm].digest() != checksum.digest:
                raise ChecksumMismatch


class DirectBody(DirectSource):
    """A body the store may have write itself into a file (see DirectSource)."""

    __slots__ = ("_body",)

    def __init__(self, body: Body) -> None:
        self._body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body.__aiter__()

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        return await self._body.write_into(fd, limit, moved)


async def guarded(body: AsyncIterable[bytes], limit: int, verifier: Verifier | None) -> AsyncIterator[bytes]:
    """The body, cut at ``limit`` bytes (-1: none), verified at its end when asked."""
    received = 0
    async for chunk in body:
        received += len(chunk)
        if 0 <= limit < received:
            keep = len(chunk) - (received - limit)
            if keep > 0:
                chunk = chunk[:keep]
                if verifier is not None:
                    verifier.update(chunk)
                yield chunk
            raise TooLarge
        if verifier is not None:
            verifier.update(chunk)
        yield chunk
    if verifier is not None:
        verifier.finish()


async def follow_offset(
    store: DataStore, info: UploadInfo, interval: float, act: Callable[[int], Awaitable[bool]]
) -> None:
    """Call ``act`` with each new stored offset, every ``interval`` seconds, until it returns True.

    Runs beside a body being received (progress responses, post-receive hooks); the store, not a
    counter, says how far the upload got.
    """
    last = info.offset
    # Until cancelled, even when a step turned the cancellation into an error that is caught below
    # (uvloop's pipes did this to hook programs): the request waits for this task, so it must end.
    while not cancel_requested():
        await asyncio.sleep(interval)
        try:
            offset = (await store.get_info(info.id)).offset
        except (UploadNotFound, StoreError, OSError):
            continue
        if offset == last:
            continue
        last = offset
        try:
            if await act(offset):
                return
        except Exception:
            # A failed progress response or hook never fails the upload itself.
            logger.exception("while following upload %s", info.id)


async def end_followers(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel a request's follower tasks and wait for them to end.

    A follower's own failure is logged, never the request's; a cancellation of the request itself
    while it waits is passed on, not mistaken for the follower's.
    """
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            if cancel_requested():
                raise
        except Exception:
            logger.exception("a follower of a request failed")


def cancel_requested() -> bool:
    """Whether the current task has been asked to stop (a cancellation not taken back)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
