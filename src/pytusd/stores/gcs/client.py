"""What the GCS store needs of Cloud Storage: the calls it makes, as a typed interface.

The store depends on :class:`Bucket` only, never on gcloud-aio-storage: the real implementation is
:class:`pytusd.stores.gcs.google.GoogleBucket`, and the unit tests run the same store code on an
in-memory fake (tests/support/fake_gcs.py). Whatever implements it keeps the promises written here
(what "not found" does for each call), because the store's state reconstruction relies on them.

Every failure is a :class:`GCSError` (the handler answers 500 without details); one that a later
retry may not meet (GCS unreachable, timing out, 429 or 5xx) is a :class:`GCSUnavailable`, which
the handler answers 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pytusd.metrics.recorder import Recorder
from pytusd.stores.base import StoreError, StoreUnavailable

#: GCS composes at most this many source objects per call.
MAX_COMPOSE_SOURCES = 32


class GCSError(StoreError):
    """A GCS request failed; ``status`` is the HTTP status (None: no answer at all)."""

    def __init__(self, operation: str, status: int | None, message: str) -> None:
        super().__init__(f"GCS {operation} failed: {status or ''} {message}".strip())
        self.operation = operation
        self.status = status

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def precondition_failed(self) -> bool:
        """An ``ifGenerationMatch`` did not hold: someone else changed the object meanwhile."""
        return self.status == 412


class GCSUnavailable(GCSError, StoreUnavailable):
    """GCS could not be reached, timed out, or answered 429/5xx."""


def gcs_error(operation: str, status: int | None, message: str) -> GCSError:
    """The error for a failed request: :class:`GCSUnavailable` if GCS is down or overloaded."""
    if status is None or status >= 500 or status in (408, 429):
        return GCSUnavailable(operation, status, message)
    return GCSError(operation, status, message)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    #: Changes with every write of the object (preconditions compare it).
    generation: int
    #: Unix time of the last write, sub-second.
    updated: float


class Bucket(Protocol):
    """One bucket; names are full object names."""

    #: Where the duration of each request to GCS is recorded.
    metrics: Recorder

    async def open(self) -> None:
        """Get ready for requests (session, credentials); called by the store's start()."""

    async def close(self) -> None:
        """Release what :meth:`open` took."""

    async def check_bucket(self) -> None:
        """Raise GCSError unless the bucket exists and can be used."""

    async def stat(self, name: str) -> ObjectInfo | None:
        """An object's size and generation, or None if there is none."""

    async def get_bytes(self, name: str) -> bytes | None:
        """A small object's whole body (info objects), or None if there is none."""

    async def open_range(self, name: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Start reading bytes ``[start, end)`` (``start < end``) of an object.

        The request is made here, so a missing object raises GCSError (``not_found``) at once; the
        returned iterator then yields the body and releases the connection at its end.
        """

    async def put_bytes(
        self, name: str, data: bytes, *, content_type: str = "application/octet-stream", if_absent: bool = False
    ) -> None:
        """Store a small object (one request: readers see the old object or the new one);
        ``if_absent`` as for :meth:`put_file`."""

    async def put_file(self, name: str, path: str, size: int, *, if_absent: bool = False) -> ObjectInfo:
        """Store the first ``size`` bytes of the local file ``path`` as an object, atomically.

        With ``if_absent`` the object must not exist yet (``ifGenerationMatch=0``; a 412 if it
        does), so two writers can never replace each other's chunk.
        """

    async def compose(
        self, name: str, sources: Sequence[str], *, if_generation: int | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        """Make ``name`` the concatenation of ``sources`` (at most :data:`MAX_COMPOSE_SOURCES`).

        Atomic: readers see the old object or the new one. ``if_generation``: only if ``name`` is
        still at that generation (0: does not exist), else a 412. A missing source is a 404.
        """

    async def delete(self, name: str) -> None:
        """Delete an object; one that does not exist is fine."""

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose name starts with ``prefix`` (all pages), in name order."""
