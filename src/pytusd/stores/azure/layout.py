"""Where an upload lives in the container, and the block arithmetic. Pure: no I/O.

Everything the store writes is named here, so the layout docs/azure.md describes (and that a
restarted server, another instance or tusd must find again) is in one place.
"""

from __future__ import annotations

import uuid

from pytusd.info import UploadInfo
from pytusd.protocol.download import content_headers
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.base import InvalidStorage, UploadNotFound

MiB = 1024 * 1024

#: Azure's limits for block blobs (service version 2019-12-12 and later).
MAX_BLOCK_SIZE = 4000 * MiB
MAX_BLOCKS = 50_000
MAX_BLOB_SIZE = MAX_BLOCK_SIZE * MAX_BLOCKS
#: Put Block From URL copies at most this many bytes per block.
MAX_COPY_SIZE = 4000 * MiB

INFO_SUFFIX = ".info"
#: ``<prefix><partial>.finals/<final>``: one empty blob per final upload waiting for a partial.
FINALS_SUFFIX = ".finals/"
# No ID has a segment ending like these (protocol.urls.RESERVED_ID_SUFFIXES): names never collide.

STORAGE_TYPE = "azurestore"
OWN_STORAGE_KEYS = ("Type", "Container", "Key")

#: Metadata of the data blob, written with each commit: Unix time, sub-second (Last-Modified has
#: whole seconds), so expiration counts from the last write.
META_WRITTEN = "tuswritten"


class Layout:
    """The blob names of an upload under the object prefix."""

    __slots__ = ("container", "prefix")

    def __init__(self, container: str, prefix: str = "") -> None:
        self.container = container
        prefix = prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def data_name(self, upload_id: str) -> str:
        if not is_valid_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        return self.prefix + upload_id

    def info_name(self, upload_id: str) -> str:
        return self.data_name(upload_id) + INFO_SUFFIX

    def finals_prefix(self, upload_id: str) -> str:
        return self.data_name(upload_id) + FINALS_SUFFIX

    def storage(self, info: UploadInfo) -> dict[str, str]:
        """``info.storage`` as create records it (tusd's azurestore fields).

        A pre-create hook cannot choose the blob: Key and Container are the store's own, and a
        hook naming others gets a 400 rather than data silently stored elsewhere.
        """
        own = {"Type": STORAGE_TYPE, "Container": self.container, "Key": self.data_name(info.id)}
        for key in ("Container", "Key"):
            wanted = info.storage.get(key, "")
            if wanted and wanted != own[key]:
                raise InvalidStorage(f"Storage.{key} cannot be chosen with the Azure store")
        return {**info.storage, **own}

    def upload_id_of_info(self, name: str) -> str | None:
        """The upload ID whose info blob is ``name``, or None if ``name`` is not an info blob."""
        if not name.startswith(self.prefix) or not name.endswith(INFO_SUFFIX):
            return None
        upload_id = name[len(self.prefix) : -len(INFO_SUFFIX)]
        return upload_id if is_valid_upload_id(upload_id) else None


def new_block_id() -> str:
    """A fresh block ID. All IDs of a blob must have the same length: always 32 hex digits, and
    random, so a block staged by a writer that crashed is never mistaken for a committed one."""
    return uuid.uuid4().hex


def block_size_for(size: int | None, preferred: int) -> int:
    """The block size for an upload of ``size`` bytes: ``preferred``, or larger if that many blocks
    would exceed Azure's 50,000 (with a margin for small blocks of short requests)."""
    if size is None:
        return preferred
    needed = -(-size // (MAX_BLOCKS - 1000))
    return min(MAX_BLOCK_SIZE, max(preferred, needed))


def blob_headers(info: UploadInfo) -> tuple[str, str]:
    """Content-Type and Content-Disposition of the data blob, by the rules of pytusd's own GET, so
    a blob served straight from the container is as safe as a download through pytusd."""
    headers = dict(content_headers(info.metadata))
    return headers["content-type"], headers["content-disposition"]
