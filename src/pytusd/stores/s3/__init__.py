"""Uploads in an S3 bucket (AWS or any S3-compatible service), after tusd's s3store.

Objects per upload ``<id>`` (see docs/s3.md for the whole story):

``<object-prefix><id>``
    One S3 multipart upload while the tus upload is in progress; the finished object once it is
    complete (CompleteMultipartUpload). A 0-byte upload is a plain empty object. A pre-create
    hook may choose another key below the prefix (``Storage.Key``); the ``.info`` records it.
``<info-prefix><id>.info``
    tusd's ``.info`` JSON; ``Storage`` names the bucket, the key and the multipart ``UploadId``.
    It is the upload's existence: created last, deleted first.
``<info-prefix><id>.part``
    The *incomplete part*: bytes that do not (yet) make a part, plus, in its metadata, how many
    parts of the multipart upload are committed (``x-amz-meta-tus-parts``). Once the upload is
    complete, an empty marker (``x-amz-meta-tus-complete``) instead: see below why it stays.
``<info-prefix><id>.finals/<final-id>``
    For a partial upload, one empty object per final upload waiting for it. A final is added
    without the partial's lock, and S3 has no atomic append: one object each is the append.

Nothing lives only in memory: the offset is recomputed from S3 on every :meth:`get_info`, as
the sizes of the committed parts (ListParts) plus the size of the incomplete part, or the size of
the finished object. A restarted server, or another instance, sees exactly what this one did.
(A write that follows this process's own write of the upload starts from what that one left,
when the lock says no other process held it since: :meth:`S3Store.get_info_to_write`.)

**Commit point.** Parts of a request are uploaded while its body still arrives, but they count
only once they are *committed*: by writing the incomplete-part object with the new part count
(one PutObject, atomic) or by completing the multipart upload. Until then they are invisible
to :meth:`get_info`, and the previous incomplete part still counts. That gives, without a second
copy of any data:

* every byte acknowledged to a client is in a committed part or the incomplete part;
* a crash or an S3 error in the middle of a request never leaves a half-counted state: uploaded
  but uncommitted parts are overwritten by the next request, or left out at completion;
* an ordinary request also commits while its body arrives: its parts as they finish, and the
  bytes spooled for the next part whenever the body pauses (so HEAD, IETF progress responses and
  a crash see what reached the server, as with a file store), and once more at its end;
* ``all_or_nothing`` (a chunk with a checksum) costs nothing extra: it commits only at its end,
  so a chunk that fails is never counted, however many of its parts already went up;
* a request of one part commits it as *pending* (its number, size and MD5) while it uploads,
  and readers count it once S3 lists it so: the commit's round trip is off the request's path,
  and a part left over from an earlier try under that number, whose MD5 differs, never counts;
* on a clean upload (S3 lists nothing above the counted parts) it names a *run* instead: every
  part listed from its number on, in order and at its size, counts, so the requests of one part
  of that size that follow commit nothing. While a run stands only such parts go up (each the
  client's bytes for exactly its place); any other write ends the run first (docs/s3.md).

A reader running beside a writer (HEAD needs no lock) reads the info, the incomplete part and
the finished object at once, then the part list; whatever order S3 answers in, it sees a state
the upload really was in: part numbers up to the committed count are never rewritten, and
completing an upload replaces the incomplete part by a marker rather than deleting it (a missing
incomplete part beside a missing object could otherwise be taken for a fresh upload).

Limits of S3 this store works within (the arithmetic is in :mod:`pytusd.stores.s3.parts`): parts
of at least 5 MiB except the last, at most 5 GiB, at most 10,000 of them.

The modules, each with one job (imports point down this list, never up):

* :mod:`.flags` -- the command-line flags, and the store they build (imported only then);
* :mod:`.store` -- :class:`S3Store`, the DataStore contract: what each call does with the objects;
* :mod:`.writer` -- one ``write_chunk``: parts uploaded while the body arrives, commits as it goes;
* :mod:`.commit` -- part uploads and the two commit points, shared by the store and the writer;
* :mod:`.state` -- an upload's state read back from S3 (the offset is never kept in memory);
* :mod:`.spool` -- local part files on their way to S3, and the cache of incomplete parts;
* :mod:`.layout` -- keys, metadata names and Storage fields: the layout above, in one place;
* :mod:`.parts` -- the part-size arithmetic, without I/O;
* :mod:`.aws` -- the real S3 client, on aiobotocore (the only untyped code), implementing...
* :mod:`.client` -- ...:class:`ObjectStorage`, the S3 calls the store makes, as a typed interface
  (the unit tests implement it in memory).

The names below are imported on first use, not with the package: the command line imports
:mod:`.flags` on every start, and a file-store server should not load the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytusd.stores.s3.client import ObjectHead, ObjectStorage, Part, S3Error
    from pytusd.stores.s3.layout import META_PARTS
    from pytusd.stores.s3.store import S3Store, UnfinishedPartsUnreadable

_EXPORTS = {
    "META_PARTS": "layout",
    "ObjectHead": "client",
    "ObjectStorage": "client",
    "Part": "client",
    "S3Error": "client",
    "S3Store": "store",
    "UnfinishedPartsUnreadable": "store",
}

__all__ = ["META_PARTS", "ObjectHead", "ObjectStorage", "Part", "S3Error", "S3Store", "UnfinishedPartsUnreadable"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
