"""Where an upload lives in the bucket: the names of its objects (the layout of docs/gcs.md).

Everything the store writes is named here, so that a restarted server or another instance finds
it again. Pure: no I/O.
"""

from __future__ import annotations

from pytusd.info import UploadInfo
from pytusd.protocol.download import content_headers
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.base import InvalidStorage, UploadNotFound

INFO_SUFFIX = ".info"
#: ``<id>.part/<start>``: a chunk of bytes not yet composed into the data object.
CHUNKS_SUFFIX = ".part/"
#: ``<id>.finals/<final>``: one empty object per final upload waiting for a partial.
FINALS_SUFFIX = ".finals/"
#: ``<id>.part/compose-<n>``: an intermediate object of a concatenation of more than 32 partials.
COMPOSE_PREFIX = "compose-"
# No ID has a segment ending in ".info", ".part" or ".finals" (protocol.urls.RESERVED_ID_SUFFIXES),
# so none of these names is ever the name of another upload's object.

#: Digits of a chunk's start offset: names sort as the offsets do (5 TiB has 13 digits).
OFFSET_DIGITS = 16

STORAGE_TYPE = "gcsstore"
#: Keys of UploadInfo.storage that this store owns.
OWN_STORAGE_KEYS = ("Type", "Bucket", "Key")
#: The largest object GCS holds.
MAX_OBJECT_SIZE = 5 * 1024**4


class Names:
    """The object names of an upload, below the object prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        prefix = prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def data(self, upload_id: str) -> str:
        """The upload's bytes (tusd's ``Key``); refuses IDs that could collide with metadata, and
        IDs with ';' (see :func:`storable_id`)."""
        if not storable_id(upload_id):
            raise UploadNotFound(upload_id)
        return self.prefix + upload_id

    def info(self, upload_id: str) -> str:
        return self.data(upload_id) + INFO_SUFFIX

    def own(self, upload_id: str) -> str:
        """Prefix of the upload's objects other than its data (one listing finds them all)."""
        return self.data(upload_id) + "."

    def chunks(self, upload_id: str) -> str:
        return self.data(upload_id) + CHUNKS_SUFFIX

    def chunk(self, upload_id: str, start: int) -> str:
        return self.chunks(upload_id) + f"{start:0{OFFSET_DIGITS}d}"

    def finals(self, upload_id: str) -> str:
        return self.data(upload_id) + FINALS_SUFFIX

    def upload_of_info(self, name: str) -> str | None:
        """The ID whose info object ``name`` is, or None."""
        if not (name.startswith(self.prefix) and name.endswith(INFO_SUFFIX)):
            return None
        upload_id = name[len(self.prefix) : -len(INFO_SUFFIX)]
        return upload_id if storable_id(upload_id) else None


def storable_id(upload_id: str) -> bool:
    """A valid ID that reaches GCS unchanged. aiohttp (yarl) sends a ``%3B`` in a URL path as
    ``;``, which URL parsers split off as path parameters (the emulator reads object ``a`` for
    ``a;x``), so no ID with ';' is stored: pytusd's own IDs never have one, a hook's may not."""
    return is_valid_upload_id(upload_id) and ";" not in upload_id


def chunk_start(name: str, chunks_prefix: str) -> int | None:
    """The start offset a chunk's name records, or None if ``name`` is no chunk."""
    rest = name[len(chunks_prefix) :] if name.startswith(chunks_prefix) else ""
    return int(rest) if len(rest) == OFFSET_DIGITS and rest.isdigit() else None


def check_storage(info: UploadInfo, bucket: str, names: Names) -> None:
    """Refuse ``Storage`` a pre-create hook chose that this store cannot honour.

    The data object is always ``<prefix><id>`` (its chunks and info are named after it), so a
    hook may not move it; the bucket is the server's.
    """
    wanted_bucket = info.storage.get("Bucket", "")
    if wanted_bucket and wanted_bucket != bucket:
        raise InvalidStorage("Storage.Bucket cannot differ from the configured bucket")
    wanted_key = info.storage.get("Key", "")
    if wanted_key and wanted_key not in (info.id, names.data(info.id)):
        raise InvalidStorage("the GCS store keeps an upload's data at its ID; Storage.Key cannot be chosen")


def content_type(info: UploadInfo) -> str:
    """Content-Type of the data object, by the rules of pytusd's own downloads."""
    return dict(content_headers(info.metadata))["content-type"]
