"""The real :class:`~pytusd.stores.s3.client.ObjectStorage`: aiobotocore's S3 client, typed.

aiobotocore's client is generated at run time and untyped, so everything untyped stays in this
module; the store sees the plain dataclasses of :mod:`pytusd.stores.s3.client` and one exception
type, :class:`~pytusd.stores.s3.client.S3Error`. aiobotocore itself is imported only when a client
opens (an optional dependency, and a slow import).

The client is configured for the widest compatibility with S3-compatible services:

* ``request_checksum_calculation="when_required"``: botocore >= 1.36 otherwise adds CRC32
  ``x-amz-checksum-*`` headers and, over HTTPS, aws-chunked trailers, which several S3-compatible
  services (Swift's s3api, older Ceph and MinIO) reject or ignore. Integrity comes from
  Content-MD5 instead, which every S3 implementation verifies: the store computes it while it
  spools a part anyway.
* Timeouts bound every attempt (``connect_timeout``, ``read_timeout``: the longest silence while
  a response is awaited or read) and ``max_attempts`` the retries, so an S3 outage fails a request
  (as :class:`~pytusd.stores.s3.client.S3Unavailable`, answered 503) instead of hanging it.
* ``payload_signing_enabled=False``: with a Content-MD5 on every body there is no need for
  botocore to read each part file a second time (in the event loop) for a SHA-256 signature.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pytusd.metrics.recorder import NO_METRICS
from pytusd.stores.base import StoreError
from pytusd.stores.s3.client import Body, ObjectHead, ObjectStorage, Part, S3Error, s3_error


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach the bucket. Credentials are never settings: botocore's standard chain finds
    them (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE and the shared
    files, web identity, container and instance metadata)."""

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    #: "path" or "virtual"; "auto" means path-style for a custom endpoint (no wildcard DNS needed),
    #: botocore's default for AWS.
    addressing: str = "auto"
    max_connections: int = 32
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 3


def _wrap(operation: str, exc: BaseException) -> S3Error:
    """Turn whatever aiobotocore/aiohttp raised into an S3Error with a usable code."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or meta.get("HTTPStatusCode") or type(exc).__name__)
        status = meta.get("HTTPStatusCode")
        return s3_error(operation, code, int(status) if status else None, str(error.get("Message") or ""))
    return s3_error(operation, type(exc).__name__, None, str(exc), unreachable=_unreachable(exc))


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says S3 could not be reached or went silent (connection refused, reset or
    closed, a timeout), as opposed to a mistake of ours or of the configuration."""
    import aiohttp
    import botocore.exceptions as bx  # type: ignore[import-untyped, unused-ignore]

    if isinstance(exc, bx.SSLError):
        return False  # a certificate problem is configuration, not an outage
    if isinstance(exc, bx.ConnectionError | bx.ConnectionClosedError | bx.ReadTimeoutError | bx.ResponseStreamingError):
        return True
    if isinstance(exc, bx.HTTPClientError):
        exc = exc.kwargs.get("error")  # anything aiohttp raised, wrapped
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | ConnectionError | TimeoutError)


def _timestamp(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


class S3Client(ObjectStorage):
    """One bucket, through one aiobotocore client (a pool of keep-alive connections)."""

    #: Parts per ListParts page (S3's maximum; tests lower it to exercise paging).
    list_page = 1000

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._context: Any = None
        self._client: Any = None
        #: Requests made, by operation (tests use it to prove what was not downloaded).
        self.calls: dict[str, int] = {}
        #: Where each request's duration is recorded, by operation (see S3Store.record_requests).
        self.metrics = NO_METRICS

    async def open(self) -> None:
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]
        from aiobotocore.session import get_session  # type: ignore[import-untyped, unused-ignore]

        s = self.settings
        s3_options: dict[str, Any] = {"payload_signing_enabled": False}
        addressing = s.addressing
        if addressing == "auto":
            addressing = "path" if s.endpoint_url else "auto"
        s3_options["addressing_style"] = addressing
        config = AioConfig(
            signature_version="s3v4",
            s3=s3_options,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": s.max_attempts, "mode": "standard"},
            max_pool_connections=s.max_connections,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
        )
        session = get_session()
        region = s.region or session.get_config_variable("region") or ("us-east-1" if s.endpoint_url else None)
        self._context = session.create_client("s3", region_name=region, endpoint_url=s.endpoint_url, config=config)
        self._client = await self._context.__aenter__()

    async def close(self) -> None:
        context, self._context, self._client = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        if self._client is None:
            raise StoreError("S3 store is not started")
        self.calls[operation] = self.calls.get(operation, 0) + 1
        method = getattr(self._client, operation)
        started = time.perf_counter()
        try:
            return await method(Bucket=self.bucket, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _wrap(operation, exc) from exc
        finally:
            self.metrics.store_request("s3", operation, time.perf_counter() - started)

    # -- objects ------------------------------------------------------------------------------

    async def check_bucket(self) -> None:
        await self._call("head_bucket")

    async def head(self, key: str) -> ObjectHead | None:
        try:
            r = await self._call("head_object", Key=key)
        except S3Error as exc:
            if exc.not_found:
                return None
            raise
        return ObjectHead(
            size=int(r.get("ContentLength") or 0),
            etag=str(r.get("ETag") or ""),
            metadata={str(k).lower(): str(v) for k, v in (r.get("Metadata") or {}).items()},
            last_modified=_timestamp(r.get("LastModified")),
        )

    async def get_bytes(self, key: str) -> bytes | None:
        """A small object's whole body (info objects), or None if there is none."""
        try:
            r = await self._call("get_object", Key=key)
        except S3Error as exc:
            if exc.not_found:
                return None
            raise
        body = r["Body"]
        try:
            data: bytes = await body.read()
        except Exception as exc:
            raise _wrap("get_object", exc) from exc
        finally:
            body.close()
        return data

    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Start reading bytes ``[start, end)`` of an object (``end`` None: to its end).

        The request is made here, so a missing object raises S3Error (``not_found``) at once; the
        returned iterator then yields the body as it arrives and releases the connection at its end.
        """
        kwargs: dict[str, Any] = {"Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{end - 1}" if end is not None else f"bytes={start}-"
        r = await self._call("get_object", **kwargs)
        return self._iterate(r["Body"])

    @staticmethod
    async def _iterate(body: Any, chunk: int = 256 * 1024) -> AsyncGenerator[bytes, None]:
        try:
            while True:
                try:
                    block: bytes = await body.read(chunk)
                except Exception as exc:
                    raise _wrap("get_object", exc) from exc
                if not block:
                    return
                yield block
        finally:
            body.close()

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
        """Store an object of ``size`` bytes; returns its ETag."""
        extra: dict[str, Any] = {"ContentMD5": md5} if md5 else {}
        if metadata:
            extra["Metadata"] = dict(metadata)
        if content_type:
            extra["ContentType"] = content_type
        if content_disposition:
            extra["ContentDisposition"] = content_disposition
        r = await self._call("put_object", Key=key, Body=body, ContentLength=size, **extra)
        return str(r.get("ETag") or "")

    async def delete(self, key: str) -> None:
        try:
            await self._call("delete_object", Key=key)
        except S3Error as exc:
            if not exc.not_found:
                raise

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            r = await self._call("list_objects_v2", **kwargs)
            for item in r.get("Contents") or []:
                yield str(item["Key"])
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                return

    # -- multipart uploads --------------------------------------------------------------------

    async def create_multipart(
        self, key: str, content_type: str | None = None, content_disposition: str | None = None
    ) -> str:
        extra = {"ContentType": content_type} if content_type else {}
        if content_disposition:
            extra["ContentDisposition"] = content_disposition
        r = await self._call("create_multipart_upload", Key=key, **extra)
        return str(r["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        extra = {"ContentMD5": md5} if md5 else {}
        r = await self._call(
            "upload_part", Key=key, UploadId=upload_id, PartNumber=number, Body=body, ContentLength=size, **extra
        )
        return str(r["ETag"])

    async def upload_part_copy(
        self, key: str, upload_id: str, number: int, source_key: str, start: int, end: int
    ) -> str:
        """Copy bytes ``[start, end)`` of ``source_key`` into part ``number``, inside S3.

        Always with an explicit range, even for a whole object: Swift's s3api lists whole-object
        copy parts with an empty ETag, which it then refuses in CompleteMultipartUpload.
        """
        r = await self._call(
            "upload_part_copy",
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": source_key},
            CopySourceRange=f"bytes={start}-{end - 1}",
        )
        return str(r["CopyPartResult"]["ETag"])

    async def list_parts(self, key: str, upload_id: str, up_to: int, after: int = 0) -> list[Part]:
        """Parts numbered ``after + 1``..``up_to`` (fewer if some are missing). Raises S3Error if the
        multipart upload does not exist (``not_found``)."""
        parts: list[Part] = []
        marker = after
        while marker < up_to:
            kwargs: dict[str, Any] = {
                "Key": key,
                "UploadId": upload_id,
                "MaxParts": min(self.list_page, up_to - marker),
            }
            if marker:
                kwargs["PartNumberMarker"] = marker
            r = await self._call("list_parts", **kwargs)
            batch = r.get("Parts") or []
            for item in batch:
                number = int(item["PartNumber"])
                if number <= up_to:
                    modified = item.get("LastModified")
                    when = modified.timestamp() if hasattr(modified, "timestamp") else 0.0
                    parts.append(Part(number, int(item["Size"]), str(item.get("ETag") or ""), when))
            next_marker = int(r.get("NextPartNumberMarker") or 0)
            if not r.get("IsTruncated") or not batch or next_marker <= marker:
                break
            marker = next_marker
        return parts

    async def part_after(self, key: str, upload_id: str, number: int) -> bool:
        kwargs: dict[str, Any] = {"Key": key, "UploadId": upload_id, "MaxParts": 1}
        if number:
            kwargs["PartNumberMarker"] = number
        r = await self._call("list_parts", **kwargs)
        # Any part at all says yes: a service that ignored the marker (and listed part 1) must not
        # make an upload look clean.
        return bool(r.get("Parts") or r.get("IsTruncated"))

    async def complete(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        layout = {"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]}
        await self._call("complete_multipart_upload", Key=key, UploadId=upload_id, MultipartUpload=layout)

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one that is gone already (completed or aborted) is fine."""
        try:
            await self._call("abort_multipart_upload", Key=key, UploadId=upload_id)
        except S3Error as exc:
            if not exc.not_found:
                raise

    async def uploading(self, key: str) -> bool:
        # Uploads are listed by key, and ``key`` sorts before every other key it begins: its own
        # uploads, if any, open the first page.
        r = await self._call("list_multipart_uploads", Prefix=key)
        return any(item.get("Key") == key for item in r.get("Uploads") or [])
