"""An in-memory S3 bucket implementing :class:`pytusd.stores.s3.client.ObjectStorage`.

The S3 store's commit logic (the part writer, state reconstruction, completion, concatenation)
runs unchanged on it, so unit tests can check it without a server, and make S3 fail exactly where
they want (:meth:`FakeS3.fail`). It keeps the promises of the interface and the S3 rules the store
relies on: Content-MD5 is verified, ETags are MD5s (multipart: MD5 of the MD5s, ``-N``), user
metadata names come back in lower case, LastModified has whole seconds, every part but the last
must hold 5 MiB at completion, and a missing object or upload is ``not_found``. It is not a
general S3 emulation: no versions, no conditional requests, no paging limits.

Operations are counted in :attr:`FakeS3.calls` under S3's names, as the real client counts them,
and logged with their keys in :attr:`FakeS3.log`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from pytusd.stores.s3.client import Body, ObjectHead, ObjectStorage, Part, S3Error, s3_error
from pytusd.stores.s3.parts import MAX_PARTS, MIN_PART_SIZE


@dataclass
class StoredObject:
    data: bytes
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    last_modified: float = 0.0
    content_disposition: str | None = None


@dataclass
class Multipart:
    key: str
    content_type: str | None
    content_disposition: str | None = None
    #: Part number -> (bytes, ETag).
    parts: dict[int, tuple[bytes, str]] = field(default_factory=dict)


@dataclass
class Fault:
    """One injected failure: the matching call after ``skip`` others raises ``error``.

    With ``applied`` the call takes effect first, as when S3 did the work but the answer was lost.
    """

    operation: str
    key: str | None
    skip: int
    applied: bool
    error: S3Error
    fired: bool = False


#: Operations that change the bucket: only these can fail after taking effect (``applied``).
_CHANGES = frozenset(
    {"put_object", "delete_object", "create_multipart_upload", "upload_part", "upload_part_copy"}
    | {"complete_multipart_upload", "abort_multipart_upload"}
)


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def _error(operation: str, code: str, status: int | None, message: str = "", unreachable: bool = False) -> S3Error:
    return s3_error(operation, code, status, message, unreachable=unreachable)


class FakeS3(ObjectStorage):
    """One bucket in memory. Inspect :attr:`objects` and :attr:`uploads`; inject with :meth:`fail`."""

    def __init__(self, *, read_block: int = 64 * 1024) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.uploads: dict[str, Multipart] = {}
        self.calls: dict[str, int] = {}
        #: (operation, key) of every call, in order.
        self.log: list[tuple[str, str | None]] = []
        self.faults: list[Fault] = []
        #: (operation, Content-MD5 or None) of every upload_part and put_object.
        self.digests: list[tuple[str, str | None]] = []
        #: How many of the next parts sent without Content-MD5 get a wrong ETag back (as if
        #: their bytes had been damaged on the way).
        self.damage_unverified_parts = 0
        self.opened = 0
        #: While set, every call fails as if S3 could not be reached (an outage).
        self.down = False
        self.read_block = read_block
        self._ids = itertools.count(1)

    # -- for tests ------------------------------------------------------------------------------

    def fail(
        self,
        operation: str,
        *,
        key: str | None = None,
        nth: int = 1,
        applied: bool = False,
        code: str = "InternalError",
        status: int = 500,
        unreachable: bool = False,
    ) -> Fault:
        """Make the ``nth`` call of ``operation`` (S3's name, e.g. ``upload_part``), on ``key`` if
        given, fail with ``code``; counted from now. ``unreachable``: as the real client fails
        when S3 cannot be reached (code ``EndpointConnectionError``, no status)."""
        if unreachable:
            error = _error(operation, "EndpointConnectionError", None, "injected", unreachable=True)
        else:
            error = _error(operation, code, status, "injected")
        fault = Fault(operation, key, nth - 1, applied, error)
        self.faults.append(fault)
        return fault

    def data(self, key: str) -> bytes:
        return self.objects[key].data

    def upload_of(self, key: str) -> Multipart:
        """The one multipart upload in progress at ``key``."""
        (upload,) = [u for u in self.uploads.values() if u.key == key]
        return upload

    async def _enter(self, operation: str, key: str | None) -> Fault | None:
        """Count the call, let other tasks run (as a network call would), apply faults."""
        self.calls[operation] = self.calls.get(operation, 0) + 1
        self.log.append((operation, key))
        await asyncio.sleep(0)
        if self.down:
            raise _error(operation, "EndpointConnectionError", None, "S3 is down", unreachable=True)
        for fault in self.faults:
            if fault.fired or fault.operation != operation or (fault.key is not None and fault.key != key):
                continue
            if fault.skip:
                fault.skip -= 1
                continue
            fault.fired = True
            if not (fault.applied and operation in _CHANGES):
                raise fault.error
            return fault
        return None

    def _upload(self, operation: str, key: str, upload_id: str) -> Multipart:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise _error(operation, "NoSuchUpload", 404)
        return upload

    @staticmethod
    async def _body(operation: str, body: Body, size: int, md5: str | None) -> bytes:
        data = body if isinstance(body, bytes) else b"".join([block async for block in body])
        if len(data) != size:
            raise _error(operation, "IncompleteBody", 400)
        if md5 is not None and base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode() != md5:
            raise _error(operation, "BadDigest", 400)
        return data

    # -- objects --------------------------------------------------------------------------------

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.opened -= 1

    async def check_bucket(self) -> None:
        await self._enter("head_bucket", None)

    async def head(self, key: str) -> ObjectHead | None:
        await self._enter("head_object", key)
        obj = self.objects.get(key)
        if obj is None:
            return None
        return ObjectHead(len(obj.data), obj.etag, dict(obj.metadata), obj.last_modified)

    async def get_bytes(self, key: str) -> bytes | None:
        await self._enter("get_object", key)
        obj = self.objects.get(key)
        return None if obj is None else obj.data

    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        await self._enter("get_object", key)
        obj = self.objects.get(key)
        if obj is None:
            raise _error("get_object", "NoSuchKey", 404)
        data = obj.data
        if start or end is not None:
            last = len(data) - 1 if end is None else end - 1
            if last >= start:  # else the Range header is invalid and ignored (RFC 9110): all of it
                if start >= len(data):
                    raise _error("get_object", "InvalidRange", 416)
                data = data[start : last + 1]
        return self._iterate(data)

    async def _iterate(self, data: bytes) -> AsyncGenerator[bytes, None]:
        for position in range(0, len(data), self.read_block):
            await asyncio.sleep(0)
            yield data[position : position + self.read_block]

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
        fault = await self._enter("put_object", key)
        self.digests.append(("put_object", md5))
        data = await self._body("put_object", body, size, md5)
        meta = {name.lower(): value for name, value in (metadata or {}).items()}
        obj = StoredObject(data, _etag(data), meta, content_type, float(int(time.time())), content_disposition)
        self.objects[key] = obj
        if fault is not None:
            raise fault.error
        return obj.etag

    async def delete(self, key: str) -> None:
        fault = await self._enter("delete_object", key)
        self.objects.pop(key, None)
        if fault is not None:
            raise fault.error

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        await self._enter("list_objects_v2", prefix)
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            yield key

    # -- multipart uploads ----------------------------------------------------------------------

    async def create_multipart(
        self, key: str, content_type: str | None = None, content_disposition: str | None = None
    ) -> str:
        fault = await self._enter("create_multipart_upload", key)
        upload_id = f"mpu-{next(self._ids)}"
        self.uploads[upload_id] = Multipart(key, content_type, content_disposition)
        if fault is not None:
            raise fault.error
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        fault = await self._enter("upload_part", key)
        upload = self._upload("upload_part", key, upload_id)
        if not 1 <= number <= MAX_PARTS:
            raise _error("upload_part", "InvalidArgument", 400)
        self.digests.append(("upload_part", md5))
        data = await self._body("upload_part", body, size, md5)
        upload.parts[number] = (data, _etag(data))
        if md5 is None and self.damage_unverified_parts > 0:
            self.damage_unverified_parts -= 1
            upload.parts[number] = (data[:-1] + bytes([data[-1] ^ 1]), _etag(data[:-1] + bytes([data[-1] ^ 1])))
        if fault is not None:
            raise fault.error
        return upload.parts[number][1]

    async def upload_part_copy(
        self, key: str, upload_id: str, number: int, source_key: str, start: int, end: int
    ) -> str:
        fault = await self._enter("upload_part_copy", key)
        upload = self._upload("upload_part_copy", key, upload_id)
        source = self.objects.get(source_key)
        if source is None:
            raise _error("upload_part_copy", "NoSuchKey", 404)
        if not 0 <= start < end <= len(source.data):
            raise _error("upload_part_copy", "InvalidRange", 416)
        data = source.data[start:end]
        upload.parts[number] = (data, _etag(data))
        if fault is not None:
            raise fault.error
        return upload.parts[number][1]

    async def list_parts(self, key: str, upload_id: str, up_to: int, after: int = 0) -> list[Part]:
        await self._enter("list_parts", key)
        upload = self._upload("list_parts", key, upload_id)
        return [Part(n, len(data), etag) for n, (data, etag) in sorted(upload.parts.items()) if after < n <= up_to]

    async def part_after(self, key: str, upload_id: str, number: int) -> bool:
        await self._enter("list_parts", key)
        upload = self._upload("list_parts", key, upload_id)
        return any(n > number for n in upload.parts)

    async def complete(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        fault = await self._enter("complete_multipart_upload", key)
        upload = self._upload("complete_multipart_upload", key, upload_id)
        if not parts:
            raise _error("complete_multipart_upload", "MalformedXML", 400)
        chosen: list[bytes] = []
        for index, part in enumerate(parts):
            stored = upload.parts.get(part.number)
            if stored is None or stored[1] != part.etag:
                raise _error("complete_multipart_upload", "InvalidPart", 400, f"part {part.number}")
            if index and part.number <= parts[index - 1].number:
                raise _error("complete_multipart_upload", "InvalidPartOrder", 400)
            if index < len(parts) - 1 and len(stored[0]) < MIN_PART_SIZE:
                raise _error("complete_multipart_upload", "EntityTooSmall", 400, f"part {part.number}")
            chosen.append(stored[0])
        digests = b"".join(hashlib.md5(data, usedforsecurity=False).digest() for data in chosen)
        etag = f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(chosen)}"'
        self.objects[key] = StoredObject(
            b"".join(chosen), etag, {}, upload.content_type, float(int(time.time())), upload.content_disposition
        )
        del self.uploads[upload_id]
        if fault is not None:
            raise fault.error

    async def abort(self, key: str, upload_id: str) -> None:
        fault = await self._enter("abort_multipart_upload", key)
        if self.uploads.get(upload_id, Multipart(key, None)).key == key:
            self.uploads.pop(upload_id, None)
        if fault is not None:
            raise fault.error

    async def uploading(self, key: str) -> bool:
        await self._enter("list_multipart_uploads", key)
        return any(upload.key == key for upload in self.uploads.values())
