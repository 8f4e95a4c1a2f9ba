"""The real :class:`~pytusd.stores.gcs.client.Bucket`: gcloud-aio-storage's asyncio client.

gcloud-aio-storage speaks GCS's JSON API over aiohttp and takes credentials as Google's own
libraries do: ``GOOGLE_APPLICATION_CREDENTIALS`` (a service account or authorized-user file), else
the metadata server of the machine; ``STORAGE_EMULATOR_HOST`` points it at an emulator, and then no
credentials are sent. Everything the library returns (JSON dicts, aiohttp errors) is turned here
into the typed values and the one error type of :mod:`.client`; the library is imported only when
a bucket opens (an optional dependency: ``pip install pytusd[gcs]``).

Timeouts: every small request has one (``REQUEST_TIMEOUT``); an upload or a download gets a bound
on silence instead (``sock_read``), so a large object is never cut off for taking long.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from typing import Any, cast

from pytusd.metrics.recorder import NO_METRICS
from pytusd.stores.base import StoreError
from pytusd.stores.gcs.client import GCSError, ObjectInfo, gcs_error

#: Seconds for a request that moves no object body.
REQUEST_TIMEOUT = 30
#: Seconds of silence after which a transfer (upload or download) fails.
SILENCE_TIMEOUT = 60
#: Bytes per read of a download.
READ_BLOCK = 256 * 1024
#: The JSON API's operation of each call, as the metrics label it (snake case, as S3's).
_CALLS = "GetBucket GetObjectMetadata GetObject GetObjectRange PutObject ComposeObject DeleteObject ListObjects"
_OPERATIONS = {name: re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in _CALLS.split()}


def _error(operation: str, exc: BaseException) -> GCSError:
    import aiohttp

    if isinstance(exc, aiohttp.ClientResponseError):
        return gcs_error(operation, exc.status, exc.message[:300])
    return gcs_error(operation, None, f"{type(exc).__name__}: {exc}")


def _object(data: dict[str, Any]) -> ObjectInfo:
    try:
        updated = datetime.fromisoformat(str(data.get("updated") or data["timeCreated"])).timestamp()
        return ObjectInfo(str(data["name"]), int(data["size"]), int(data["generation"]), updated)
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"GCS returned an object resource without size or generation: {data!r}"[:300]) from exc


class GoogleBucket:
    """One bucket through gcloud-aio-storage; ``endpoint`` overrides the API root (an emulator or a
    private endpoint), else ``STORAGE_EMULATOR_HOST`` or Google's."""

    def __init__(self, bucket: str, endpoint: str | None = None) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self._storage: Any = None
        #: Where each request's duration is recorded (see GCSStore.record_requests).
        self.metrics = NO_METRICS

    @property
    def _client(self) -> Any:
        if self._storage is None:
            raise StoreError("GCS store is not started")
        return self._storage

    async def open(self) -> None:
        from gcloud.aio.storage import Storage

        self._storage = Storage(api_root=self.endpoint) if self.endpoint else Storage()

    async def close(self) -> None:
        storage, self._storage = self._storage, None
        if storage is not None:
            await storage.close()

    @contextlib.asynccontextmanager
    async def _call(self, operation: str, *, timed: bool = True) -> AsyncIterator[None]:
        """Turn a request's failure into a GCSError; time it (not the reads of a body it opened)."""
        import aiohttp

        started = time.perf_counter()
        try:
            yield
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _error(operation, exc) from exc
        finally:
            if timed:
                self.metrics.store_request("gcs", _OPERATIONS[operation], time.perf_counter() - started)

    def _transfer_timeout(self) -> Any:
        import aiohttp

        return aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT, sock_read=SILENCE_TIMEOUT)

    async def check_bucket(self) -> None:
        async with self._call("GetBucket"):
            await self._client.get_bucket_metadata(self.bucket, timeout=REQUEST_TIMEOUT)

    async def stat(self, name: str) -> ObjectInfo | None:
        try:
            async with self._call("GetObjectMetadata"):
                data = await self._client.download_metadata(self.bucket, name, timeout=REQUEST_TIMEOUT)
        except GCSError as exc:
            if exc.not_found:
                return None
            raise
        return _object(data)

    async def get_bytes(self, name: str) -> bytes | None:
        try:
            async with self._call("GetObject"):
                return cast(bytes, await self._client.download(self.bucket, name, timeout=REQUEST_TIMEOUT))
        except GCSError as exc:
            if exc.not_found:
                return None
            raise

    async def open_range(self, name: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        async with self._call("GetObjectRange"):
            stream = await self._client.download_stream(
                self.bucket, name, headers=headers, timeout=self._transfer_timeout()
            )
        return self._body(stream, end - start)

    async def _body(self, stream: Any, length: int) -> AsyncGenerator[bytes, None]:
        try:
            left = length
            while left > 0:
                async with self._call("GetObjectRange", timed=False):
                    block = await stream.read(min(READ_BLOCK, left))
                if not block:
                    raise GCSError("GetObjectRange", None, f"object ended {left} bytes early")
                left -= len(block)
                yield block
        finally:
            await stream.__aexit__(None, None, None)

    async def put_bytes(
        self, name: str, data: bytes, *, content_type: str = "application/octet-stream", if_absent: bool = False
    ) -> None:
        parameters = {"ifGenerationMatch": "0"} if if_absent else {}
        async with self._call("PutObject"):
            await self._client.upload(
                self.bucket, name, data, content_type=content_type, force_resumable_upload=False,
                parameters=parameters, timeout=REQUEST_TIMEOUT,
            )  # fmt: skip

    async def put_file(self, name: str, path: str, size: int, *, if_absent: bool = False) -> ObjectInfo:
        parameters = {"ifGenerationMatch": "0"} if if_absent else {}
        async with self._call("PutObject"):
            with open(path, "rb") as body:
                if body.seek(0, 2) != size:
                    raise StoreError(f"spool file {path} does not hold {size} bytes")
                body.seek(0)
                data = await self._client.upload(
                    self.bucket, name, body, content_type="application/octet-stream", parameters=parameters,
                    timeout=self._transfer_timeout(),
                )  # fmt: skip
        return _object(data)

    async def compose(
        self, name: str, sources: Sequence[str], *, if_generation: int | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        params = {} if if_generation is None else {"ifGenerationMatch": str(if_generation)}
        async with self._call("ComposeObject"):
            data = await self._client.compose(
                self.bucket, name, list(sources), content_type=content_type or "application/octet-stream",
                params=params, timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        return _object(data)

    async def delete(self, name: str) -> None:
        try:
            async with self._call("DeleteObject"):
                await self._client.delete(self.bucket, name, timeout=REQUEST_TIMEOUT)
        except GCSError as exc:
            if not exc.not_found:
                raise

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        token = ""
        while True:
            params = {"prefix": prefix, "fields": "items(name,size,generation,updated,timeCreated),nextPageToken"}
            if token:
                params["pageToken"] = token
            async with self._call("ListObjects"):
                page = await self._client.list_objects(self.bucket, params=params, timeout=REQUEST_TIMEOUT)
            for item in page.get("items") or []:
                yield _object(item)
            token = str(page.get("nextPageToken") or "")
            if not token:
                return
