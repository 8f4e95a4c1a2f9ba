"""What the S3 store needs of S3: the calls it makes, as a typed interface, and the values they return.

The store and its part writer depend on :class:`ObjectStorage` only, never on aiobotocore: the
real implementation is :class:`pytusd.stores.s3.aws.S3Client`, and the unit tests run the same
store code on an in-memory fake (tests/support/fake_s3.py), so the commit logic can be tested
without an S3 server. Anything that implements this interface must keep the promises written
here (what "not found" does for each call), because the store's state reconstruction relies on
them.

Every failure is an :class:`S3Error`, a :class:`~pytusd.stores.base.StoreError` (the handler
answers 500 for it without details); one that a later retry may not meet (S3 unreachable, timing
out, overloaded or failing inside) is an :class:`S3Unavailable`, which the handler answers 503.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pytusd.stores.base import StoreError, StoreUnavailable

#: A request body: bytes, or an async iterable of exactly the announced number of bytes (aiohttp
#: sends it as it comes; a spool stream also restarts from its first byte for a retry).
Body = bytes | AsyncIterable[bytes]

#: Error codes (and statuses, for HEAD which has no body) that mean "no such object/upload".
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
#: Error codes of an S3 that is overloaded or failing for now (besides any 5xx status).
_UNAVAILABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException"}
    | {"RequestLimitExceeded", "TooManyRequests", "TooManyRequestsException", "429", "503"}
)


class S3Error(StoreError):
    """An S3 request failed; ``code`` is S3's error code (or the exception's type name)."""

    def __init__(self, operation: str, code: str, status: int | None, message: str) -> None:
        super().__init__(f"S3 {operation} failed: {code} {message}".strip())
        self.operation = operation
        self.code = code
        self.status = status

    @property
    def not_found(self) -> bool:
        return self.code in _NOT_FOUND_CODES or self.status == 404


class S3Unavailable(S3Error, StoreUnavailable):
    """S3 could not be reached, timed out, or answered 5xx/SlowDown (after the client's retries)."""


def s3_error(operation: str, code: str, status: int | None, message: str, *, unreachable: bool = False) -> S3Error:
    """The error for a failed S3 request: :class:`S3Unavailable` if S3 is down or overloaded."""
    if unreachable or (status is not None and (status >= 500 or status == 429)) or code in _UNAVAILABLE_CODES:
        return S3Unavailable(operation, code, status, message)
    return S3Error(operation, code, status, message)


@dataclass(frozen=True, slots=True)
class ObjectHead:
    size: int
    etag: str
    #: User metadata, names in lower case (as S3 returns them).
    metadata: Mapping[str, str]
    #: Unix time; S3 gives whole seconds.
    last_modified: float


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    size: int
    etag: str
    #: Unix time S3 lists for the part (0 where unknown): a run of parts is written by its parts.
    modified: float = field(default=0.0, compare=False)


class ObjectStorage(Protocol):
    """One bucket. Keys are full object keys; ``upload_id`` is an S3 multipart upload's ID."""

    async def open(self) -> None:
        """Get ready for requests (connections, credentials); called by the store's start()."""

    async def close(self) -> None:
        """Release what :meth:`open` took."""

    async def check_bucket(self) -> None:
        """Raise S3Error unless the bucket exists and can be used."""

    async def head(self, key: str) -> ObjectHead | None:
        """An object's size, ETag and metadata, or None if there is none."""

    async def get_bytes(self, key: str) -> bytes | None:
        """A small object's whole body (info objects), or None if there is none."""

    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Start reading bytes ``[start, end)`` of an object (``end`` None: to its end).

        The request is made here, so a missing object raises S3Error (``not_found``) at once; the
        returned iterator then yields the body as it arrives and releases the connection at its end.
        """

    async def put(
        self,
        key: str,
        body: Body,
        size: int,
        md5: str | None,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str:
        """Store an object of ``size`` bytes; returns its ETag.

        ``md5`` is the base64 Content-MD5 of the body, which S3 verifies (None: content hashes are
        off). One PutObject is atomic: readers see the old object or the new one, which is what
        makes it a commit point.
        """

    async def delete(self, key: str) -> None:
        """Delete an object; one that does not exist is fine."""

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """Every key that starts with ``prefix`` (all pages)."""

    async def create_multipart(
        self, key: str, content_type: str | None = None, content_disposition: str | None = None
    ) -> str:
        """Start a multipart upload (the object gets these headers when completed); returns its ID."""

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        """Upload part ``number`` of ``size`` bytes; returns the part's ETag. ``md5``: as for
        :meth:`put`. A part uploaded again under the same number replaces the earlier one."""

    async def upload_part_copy(
        self, key: str, upload_id: str, number: int, source_key: str, start: int, end: int
    ) -> str:
        """Copy bytes ``[start, end)`` of ``source_key`` into part ``number``, inside S3."""

    async def list_parts(self, key: str, upload_id: str, up_to: int, after: int = 0) -> list[Part]:
        """Parts numbered ``after + 1``..``up_to`` (fewer if some are missing). Raises S3Error if the
        multipart upload does not exist (``not_found``)."""

    async def part_after(self, key: str, upload_id: str, number: int) -> bool:
        """Whether the multipart upload holds a part numbered above ``number``. Raises S3Error
        if it does not exist (``not_found``)."""

    async def complete(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        """Turn the multipart upload into the object ``key``, made of ``parts`` in order."""

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one that is gone already (completed or aborted) is fine."""

    async def uploading(self, key: str) -> bool:
        """Whether a multipart upload is in progress at exactly ``key``."""
