"""The real :class:`~pytusd.stores.azure.client.BlobStorage`, on Microsoft's azure-storage-blob
(its asyncio client, which sends requests with aiohttp).

The only module that imports the SDK: it turns the SDK's exceptions into the promises of
:mod:`.client` (None or False for "not found"/"exists", :class:`AzureUnavailable` for an Azure
that cannot be reached), and signs the source URLs of Put Block From URL with a short-lived
read-only SAS made from the account key.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import TypeVar

from azure.core import MatchConditions
from azure.core import exceptions as az
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    ContentSettings,
    StandardBlobTier,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, LinearRetry

from pytusd.metrics.recorder import NO_METRICS
from pytusd.stores.azure.client import AzureError, BlobHead, Block, Listed, azure_error

T = TypeVar("T")

#: Bytes per GET of a download.
READ_SIZE = 4 * 1024 * 1024
#: How long the SAS of a copy source is valid: one Put Block From URL uses it at once.
SAS_LIFETIME = datetime.timedelta(hours=1)
#: Clocks of this server and Azure may differ: the SAS is valid from a little before now.
SAS_SKEW = datetime.timedelta(minutes=5)


def _error(operation: str, exc: Exception) -> AzureError:
    if isinstance(exc, az.HttpResponseError):
        code = str(getattr(exc, "error_code", None) or type(exc).__name__)
        return azure_error(operation, code, exc.status_code, exc.reason or "")
    # ServiceRequestError, ServiceResponseError, timeouts, refused connections.
    return azure_error(operation, type(exc).__name__, None, str(exc), unreachable=True)


class AzureClient:
    """One container of one storage account, with the account's shared key."""

    def __init__(
        self,
        *,
        account_name: str,
        account_key: str,
        container: str,
        endpoint: str = "",
        container_access: str = "",
        access_tier: str = "",
    ) -> None:
        self.account_name = account_name
        self.account_key = account_key
        self.container = container
        self.endpoint = (endpoint or f"https://{account_name}.blob.core.windows.net").rstrip("/")
        self.container_access = container_access or None
        self.access_tier = StandardBlobTier(access_tier.capitalize()) if access_tier else None
        self._service: BlobServiceClient | None = None
        self._container: ContainerClient | None = None
        #: Where each request's duration is recorded (see AzureStore.record_requests).
        self.metrics = NO_METRICS

    @contextlib.asynccontextmanager
    async def _timed(self, operation: str) -> AsyncIterator[None]:
        """Record how long the SDK call (its retries included) took, as S3's and GCS's are."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._record(operation, started)

    def _record(self, operation: str, started: float) -> None:
        self.metrics.store_request("azure", operation, time.perf_counter() - started)

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        async with self._timed(operation):
            try:
                return await call
            except (az.AzureError, OSError, TimeoutError) as exc:
                raise _error(operation, exc) from exc

    @property
    def _c(self) -> ContainerClient:
        if self._container is None:
            raise AzureError("request", "NotOpen", None, "the client is not open")
        return self._container

    async def open(self) -> None:
        self._service = BlobServiceClient(
            self.endpoint,
            credential=AzureNamedKeyCredential(self.account_name, self.account_key),
            # The SDK's default waits 15 s, then 18, then 24 before giving up: a client would give up
            # first. Three retries about a second apart ride out a blip; a longer outage is a 503
            # with Retry-After, and the client comes back.
            retry_policy=LinearRetry(backoff=1, retry_total=3, random_jitter_range=1),
            connection_timeout=10,
            read_timeout=120,
            # A download's first GET is 32 MiB by default, read before its first byte is sent:
            # 4 MiB, as every later one, so a client that goes away early costs little.
            max_single_get_size=READ_SIZE,
            max_chunk_get_size=READ_SIZE,
        )
        self._container = self._service.get_container_client(self.container)

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()
        self._service = self._container = None

    async def ensure_container(self) -> None:
        try:
            await self._call("create_container", self._c.create_container(public_access=self.container_access))
        except AzureError as exc:
            if exc.status != 409:  # ContainerAlreadyExists
                raise

    async def get_bytes(self, name: str) -> bytes | None:
        blob = self._c.get_blob_client(name)
        try:
            async with self._timed("download_blob"):
                downloader = await blob.download_blob()
                return await downloader.readall()
        except az.ResourceNotFoundError:
            return None
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("download_blob", exc) from exc

    async def create_bytes(self, name: str, data: bytes, content_type: str) -> bool:
        blob = self._c.get_blob_client(name)
        try:
            # overwrite=False sends If-None-Match: *, so exactly one creator wins.
            async with self._timed("upload_blob"):
                await blob.upload_blob(
                    data, overwrite=False, content_settings=ContentSettings(content_type=content_type)
                )
        except az.ResourceExistsError:
            return False
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("upload_blob", exc) from exc
        return True

    async def replace_bytes(self, name: str, data: bytes, content_type: str) -> bool:
        blob = self._c.get_blob_client(name)
        try:
            async with self._timed("upload_blob"):
                await blob.upload_blob(
                    data,
                    overwrite=True,
                    match_condition=MatchConditions.IfPresent,
                    content_settings=ContentSettings(content_type=content_type),
                )
        except (az.ResourceNotFoundError, az.ResourceModifiedError):
            return False
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("upload_blob", exc) from exc
        return True

    async def head(self, name: str) -> BlobHead | None:
        blob = self._c.get_blob_client(name)
        try:
            async with self._timed("get_blob_properties"):
                props = await blob.get_blob_properties()
        except az.ResourceNotFoundError:
            return None
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("get_blob_properties", exc) from exc
        modified = props.last_modified.timestamp() if props.last_modified else 0.0
        metadata = {k.lower(): v for k, v in (props.metadata or {}).items()}
        return BlobHead(size=int(props.size), metadata=metadata, last_modified=modified)

    async def committed_blocks(self, name: str) -> list[Block] | None:
        blob = self._c.get_blob_client(name)
        try:
            async with self._timed("get_block_list"):
                committed, _ = await blob.get_block_list("committed")
        except az.ResourceNotFoundError:
            return None
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("get_block_list", exc) from exc
        return [Block(str(b.id), int(b.size)) for b in committed]

    async def stage_block(self, name: str, block_id: str, data: bytes) -> None:
        blob = self._c.get_blob_client(name)
        await self._call("stage_block", blob.stage_block(block_id, data, length=len(data)))

    async def stage_block_from_blob(self, name: str, block_id: str, source: str, start: int, length: int) -> None:
        now = datetime.datetime.now(datetime.UTC)
        sas = generate_blob_sas(
            self.account_name,
            self.container,
            source,
            account_key=self.account_key,
            permission=BlobSasPermissions(read=True),
            start=now - SAS_SKEW,
            expiry=now + SAS_LIFETIME,
        )
        url = f"{self._c.get_blob_client(source).url}?{sas}"
        blob = self._c.get_blob_client(name)
        await self._call(
            "stage_block_from_url",
            blob.stage_block_from_url(block_id, url, source_offset=start, source_length=length),
        )

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
        blob = self._c.get_blob_client(name)
        settings = ContentSettings(content_type=content_type, content_disposition=content_disposition)
        await self._call(
            "commit_block_list",
            blob.commit_block_list(
                [BlobBlock(block_id=i) for i in block_ids],
                content_settings=settings,
                metadata=dict(metadata),
                standard_blob_tier=self.access_tier if complete else None,
            ),
        )

    async def open_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        blob = self._c.get_blob_client(name)
        try:
            async with self._timed("download_blob"):  # its first GET; the later ones are its body
                downloader = await blob.download_blob(offset=start, length=end - start)
            async for chunk in downloader.chunks():
                yield chunk
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("download_blob", exc) from exc

    async def delete(self, name: str) -> None:
        try:
            async with self._timed("delete_blob"):
                await self._c.delete_blob(name)
        except az.ResourceNotFoundError:
            return
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("delete_blob", exc) from exc

    async def list_blobs(self, prefix: str) -> AsyncIterator[Listed]:
        try:
            pages = self._c.list_blobs(name_starts_with=prefix).by_page()
            while True:
                started = time.perf_counter()
                try:
                    page = await anext(pages, None)
                except BaseException:
                    self._record("list_blobs", started)
                    raise
                if page is None:
                    return  # no request: the last page had no continuation
                self._record("list_blobs", started)  # one request per page
                async for item in page:
                    created = item.creation_time.timestamp() if item.creation_time else 0.0
                    yield Listed(str(item.name), created)
        except (az.AzureError, OSError, TimeoutError) as exc:
            raise _error("list_blobs", exc) from exc
