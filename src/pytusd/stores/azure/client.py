"""What the Azure store needs of Azure Blob Storage: the calls it makes, as a typed interface.

The store depends on :class:`BlobStorage` only, never on the Azure SDK: the real implementation
is :class:`pytusd.stores.azure.sdk.AzureClient`, and the unit tests run the same store code on an
in-memory fake (tests/support/fake_azure.py). Anything that implements this interface must keep
the promises written here (what "not found" does for each call): the store's state is read back
from these answers alone.

Every failure is an :class:`AzureError` (the handler answers 500 without details); one that a
later retry may not meet (Azure unreachable, timing out, 5xx, throttling) is an
:class:`AzureUnavailable`, answered 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pytusd.metrics.recorder import Recorder
from pytusd.stores.base import StoreError, StoreUnavailable


class AzureError(StoreError):
    """An Azure request failed; ``code`` is Azure's error code (or the exception's type name)."""

    def __init__(self, operation: str, code: str, status: int | None, message: str = "") -> None:
        super().__init__(f"Azure {operation} failed: {code} {message}".strip())
        self.operation = operation
        self.code = code
        self.status = status


class AzureUnavailable(AzureError, StoreUnavailable):
    """Azure could not be reached, timed out, or answered 5xx/429 (after the SDK's retries)."""


def azure_error(
    operation: str, code: str, status: int | None, message: str = "", *, unreachable: bool = False
) -> AzureError:
    """The error for a failed request: :class:`AzureUnavailable` if Azure is down or throttling."""
    if unreachable or (status is not None and (status >= 500 or status == 429)):
        return AzureUnavailable(operation, code, status, message)
    return AzureError(operation, code, status, message)


@dataclass(frozen=True, slots=True)
class BlobHead:
    #: Committed size: staged but uncommitted blocks never count.
    size: int
    #: User metadata, names in lower case.
    metadata: Mapping[str, str]
    #: Unix time; Azure gives whole seconds.
    last_modified: float


@dataclass(frozen=True, slots=True)
class Block:
    """A committed block of a block blob: its ID (as the store chose it, not base64) and size."""

    id: str
    size: int


@dataclass(frozen=True, slots=True)
class Listed:
    name: str
    #: Unix time the blob was created (orders pending-final markers).
    created: float


class BlobStorage(Protocol):
    """One container. Names are full blob names."""

    #: Where the duration of each request to Azure is recorded.
    metrics: Recorder

    async def open(self) -> None:
        """Get ready for requests; called by the store's start()."""

    async def close(self) -> None:
        """Release what :meth:`open` took."""

    async def ensure_container(self) -> None:
        """Create the container if it does not exist (with the configured access type)."""

    async def get_bytes(self, name: str) -> bytes | None:
        """A small blob's whole body (info blobs), or None if there is none."""

    async def create_bytes(self, name: str, data: bytes, content_type: str) -> bool:
        """Store a small blob only if none exists (If-None-Match: *); False if one does."""

    async def replace_bytes(self, name: str, data: bytes, content_type: str) -> bool:
        """Overwrite a small blob only if it exists (If-Match: *); False if there is none."""

    async def head(self, name: str) -> BlobHead | None:
        """A blob's committed size, metadata and time, or None if it has none committed."""

    async def committed_blocks(self, name: str) -> list[Block] | None:
        """The committed block list, in order; None if the blob does not exist."""

    async def stage_block(self, name: str, block_id: str, data: bytes) -> None:
        """Put Block: staged, invisible until a commit names it."""

    async def stage_block_from_blob(self, name: str, block_id: str, source: str, start: int, length: int) -> None:
        """Put Block From URL: copy ``length`` bytes of blob ``source`` from ``start``, inside Azure."""

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
        """Put Block List: the blob becomes exactly these blocks, atomically (the commit point).

        ``complete``: the upload is whole with this commit, so the configured access tier applies
        (an archived blob cannot take another commit)."""

    def open_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of a committed blob (``end`` > ``start``); raises AzureError with
        status 404 if there is no blob."""

    async def delete(self, name: str) -> None:
        """Delete a blob; one that does not exist is fine."""

    def list_blobs(self, prefix: str) -> AsyncIterator[Listed]:
        """Every blob whose name starts with ``prefix`` (all pages)."""
