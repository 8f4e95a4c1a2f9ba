"""Where an upload lives in the bucket: its keys, the metadata of its incomplete part, its Storage.

Everything the store writes is named here, so the layout that docs/s3.md describes (and that a
restarted server, another instance or tusd must find again) is in one place. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from pytusd.info import UploadInfo
from pytusd.protocol.download import content_headers
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.base import InvalidStorage, UploadNotFound

INFO_SUFFIX = ".info"
PART_SUFFIX = ".part"
#: ``<info-prefix><partial>.finals/<final>``: one empty object per final waiting for a partial.
FINALS_SUFFIX = ".finals/"
# No ID has a segment ending like these (protocol.urls.RESERVED_ID_SUFFIXES), so keys never collide.

#: Metadata of the incomplete-part object (S3 returns user metadata names in lower case).
META_PARTS = "tus-parts"  # how many parts of the multipart upload are committed
META_MULTIPART = "tus-multipart"  # the multipart upload it belongs to (guards against stale objects)
META_WRITTEN = "tus-written"  # Unix time of the commit, sub-second (LastModified has whole seconds)
META_COMPLETE = "tus-complete"  # the marker that replaces the incomplete part of a finished upload
META_COMMIT = "tus-commit"  # a random name of the commit: its part list may be remembered (state.py)
#: ``<number>:<size>:<md5 hex>``: the part after the committed ones, named before it lands; it
#: counts once S3 lists it with that size and MD5 (see pending_part and the package docs). The MD5
#: is empty without content hashes.
META_PENDING = "tus-pending"
#: ``<number>:<size>``: a *run* of parts from the one after the committed ones, each of that size,
#: named before any of them lands: a part counts once S3 lists it, and every part of the run before
#: it, at that size (see run_of and the package docs). Beside an empty incomplete part only.
META_RUN = "tus-run"

#: Keys of UploadInfo.storage that this store owns.
STORAGE_TYPE = "s3store"
STORAGE_MULTIPART = "MultipartUploadId"
OWN_STORAGE_KEYS = ("Type", "Bucket", "Key", "InfoKey", "PartKey", STORAGE_MULTIPART)

#: Content-MD5 of an empty body (empty objects: markers, 0-byte uploads, an empty incomplete part).
EMPTY_MD5 = base64.b64encode(hashlib.md5(b"", usedforsecurity=False).digest()).decode()


_MD5_ETAG = re.compile(r'"?([0-9a-f]{32})"?')


def etag_md5(etag: str) -> str | None:
    """The MD5 an ETag states (S3's and Swift's for parts and plain objects), or None if it is not one."""
    found = _MD5_ETAG.fullmatch(etag.strip().lower())
    return found.group(1) if found else None


def pending_value(number: int, size: int, md5_hex: str) -> str:
    return f"{number}:{size}:{md5_hex}"


def pending_part(metadata: Mapping[str, str], count: int) -> tuple[int, str] | None:
    """The size and MD5 of part ``count + 1`` if the incomplete part names it as pending.

    The MD5 is empty where the writer had none (no content hashes): it named the part only where
    S3 listed nothing above the counted parts (State.clean), so whatever lands under its number
    with its size is that part. Anything unreadable, or naming another part, is no pending part:
    the commit then counts only ``count`` parts, which is always a state the upload was in.
    """
    number, _, rest = metadata.get(META_PENDING, "").partition(":")
    size, _, md5_hex = rest.partition(":")
    if not (number.isdigit() and size.isdigit() and int(number) == count + 1):
        return None
    if md5_hex and etag_md5(md5_hex) != md5_hex:
        return None
    return int(size), md5_hex


def run_value(first: int, size: int) -> str:
    return f"{first}:{size}"


def run_of(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """The first part and the size of the run an incomplete part's metadata names, or None.

    A run starts right after the committed parts (``tus-parts``); anything unreadable, or naming
    another start, is no run: the commit then counts only its committed parts, always a state the
    upload was in.
    """
    first, _, size = metadata.get(META_RUN, "").partition(":")
    count = metadata.get(META_PARTS, "")
    if not (first.isdigit() and size.isdigit() and count.isdigit()):
        return None
    if int(first) != int(count) + 1 or int(size) == 0:
        return None
    return int(first), int(size)


def is_pending_part(size: int, etag: str, pending: tuple[int, str]) -> bool:
    """Whether a part S3 lists (``size``, ``etag``) is the one a commit named (:func:`pending_part`):
    the same size, and the same MD5 unless it was named without one. The one rule readers and the
    writer share."""
    named_size, md5_hex = pending
    return size == named_size and (not md5_hex or etag_md5(etag) == md5_hex)


class KeyLayout:
    """The keys of an upload's objects, under the object and info prefixes (see the package docs)."""

    __slots__ = ("info_prefix", "object_prefix")

    def __init__(self, object_prefix: str, info_prefix: str | None = None) -> None:
        self.object_prefix = as_prefix(object_prefix)
        self.info_prefix = as_prefix(object_prefix if info_prefix is None else info_prefix)

    def object_key(self, upload_id: str) -> str:
        """Key of the upload's data; refuses IDs that would collide with another's metadata."""
        if not acceptable_id(upload_id):
            raise UploadNotFound(upload_id)
        return self.object_prefix + upload_id

    def info_key(self, upload_id: str) -> str:
        self.object_key(upload_id)
        return self.info_prefix + upload_id + INFO_SUFFIX

    def part_key(self, upload_id: str) -> str:
        self.object_key(upload_id)
        return self.info_prefix + upload_id + PART_SUFFIX

    def finals_prefix(self, upload_id: str) -> str:
        self.object_key(upload_id)
        return self.info_prefix + upload_id + FINALS_SUFFIX

    def chosen_key(self, info: UploadInfo, bucket: str) -> str | None:
        """The data key a pre-create hook chose (``Storage.Key``, below the object prefix), or None.

        The key must obey the rules of IDs, so it stays below the prefix and never names one of
        the store's own objects (``.info``, ``.part``, ``.finals/``). The bucket cannot be chosen:
        one server has one bucket (and its credentials).
        """
        bucket_wanted = info.storage.get("Bucket", "")
        if bucket_wanted and bucket_wanted != bucket:
            raise InvalidStorage("Storage.Bucket cannot differ from the configured bucket")
        wanted = info.storage.get("Key", "")
        if not wanted:
            return None
        if not acceptable_id(wanted):
            raise InvalidStorage("Storage.Key must be a key below the object prefix that follows the rules of IDs")
        key = self.object_prefix + wanted
        return None if key == self.object_key(info.id) else key

    def data_key(self, info: UploadInfo) -> str:
        """Key of the upload's data: the ``Storage.Key`` create recorded, else the ID's.

        A recorded key that is not below the object prefix (an upload of a server with another
        prefix, a damaged info object) is not followed: the ID's key is used, as it was before keys
        could be chosen.
        """
        key = info.storage.get("Key", "")
        if key.startswith(self.object_prefix) and acceptable_id(key[len(self.object_prefix) :]):
            return key
        return self.object_key(info.id)


def acceptable_id(upload_id: str) -> bool:
    """A valid ID: none of its segments ends like one of the store's own keys (the rules of every ID)."""
    return is_valid_upload_id(upload_id)


def as_prefix(prefix: str) -> str:
    """A key prefix ends with '/' (as in tusd), unless it is empty."""
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def object_headers(info: UploadInfo) -> tuple[str, str]:
    """Content-Type and Content-Disposition of the finished object, from ``filetype``/``filename``.

    The rules of pytusd's own downloads (tusd's): a type that is not a valid media type becomes
    application/octet-stream, only harmless types are ``inline``, the file name loses quotes and
    control characters and non-ASCII names get a ``filename*=UTF-8''`` form. So an object served
    straight from the bucket is as safe as a GET through pytusd. No other metadata goes to S3: user
    metadata is limited to 2 KB there, and the info object keeps all of it anyway.
    """
    headers = dict(content_headers(info.metadata))
    return headers["content-type"], headers["content-disposition"]
