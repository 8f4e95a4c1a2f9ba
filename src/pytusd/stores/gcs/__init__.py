"""Uploads in a Google Cloud Storage bucket, after tusd's gcsstore.

Objects per upload ``<id>`` below the object prefix (docs/gcs.md tells the whole story):

``<prefix><id>``
    The upload's bytes (tusd's ``Storage.Key``). Created by the first write's *compose*, which
    then appends to it (a new generation of the object, made of the old one and chunks); while
    it does not exist the upload holds 0 bytes (a 0-byte upload never gets one).
``<prefix><id>.info``
    tusd's ``.info`` JSON (``Storage``: ``Type: gcsstore``, ``Bucket``, ``Key``). It is the
    upload's existence: created last, deleted first.
``<prefix><id>.part/<start>``
    A *chunk*: bytes of a PATCH, uploaded as an object of its own whose name records the offset it
    starts at (16 digits, so names sort as offsets).
``<prefix><id>.finals/<final-id>``
    For a partial upload, one small object per final upload waiting for it (added without the
    partial's lock, so each is one atomic write of its own).

**The offset is recomputed from GCS alone** (:mod:`.state`): the size of the data object, plus
the chunks that continue it -- the one starting exactly where the data object ends, the one
starting where that one ends, and so on. A chunk starting below the data object's end is already
inside it (composed) and is not counted. Nothing lives in memory, so a restarted server or
another instance sees exactly what this one did.

**Commit point.** A write spools the body to a local file (never memory) and uploads it as a
chunk: one object upload, atomic, created only if absent (``ifGenerationMatch=0``). From that
moment its bytes count, and only then does ``write_chunk`` return (or, for a long body, every
``commit_size`` bytes). Composing the chunks into the data object (at most 32 sources per
compose, so 31 chunks per step, under ``ifGenerationMatch`` of the data object) and deleting them
afterwards only tidies up. ``all_or_nothing`` uploads the chunk only once the whole body arrived
and passed: a failed checksum leaves no object at all.

**Crash windows** (SIGKILL or a GCS error between two requests):

* body spooled, chunk not uploaded: the bytes were never acknowledged; the spool file is removed
  by the next store that starts in the same spool directory;
* chunk uploaded, compose not done: the chunk counts (it continues the data object); the next
  write composes it;
* compose done, chunk not deleted: the chunk now starts below the data object's end, so it is
  ignored, and the next write deletes it;
* several composes of one write, cut between them: each compose is atomic and the rest are still
  chunks that continue the data object;
* a concatenation of more than 32 partials, cut while composing intermediates
  (``<final>.part/compose-<n>``): the final's data object is written by the last compose only,
  so it is empty or whole; intermediates are not chunks (not counted) and are deleted by the next
  write or ``terminate``;
* terminate cut after the info object went: the upload is gone; the remaining objects are
  deleted by a later ``create`` of the same ID before it writes anything.

Readers beside a writer (HEAD, GET take no lock) list the chunks *before* they read the data
object: a writer composes before it deletes and the data object only grows, so a reader always
sees a state the upload really was in; a GET that finds a chunk deleted meanwhile reads the same
bytes from the data object.

The modules, each with one job (imports point down this list):

* :mod:`.flags` -- the command-line flags, and the store they build (imported only then);
* :mod:`.store` -- :class:`GCSStore`, the DataStore contract;
* :mod:`.compose` -- chunk commits and compose (appends, concatenation in steps of 32);
* :mod:`.state` -- an upload's state read back from GCS;
* :mod:`.spool` -- request bodies in local files on their way to GCS;
* :mod:`.layout` -- object names and Storage fields, in one place;
* :mod:`.google` -- the real client, on gcloud-aio-storage (the only untyped code), implementing...
* :mod:`.client` -- ...:class:`Bucket`, the GCS calls the store makes, as a typed interface
  (the unit tests implement it in memory: tests/support/fake_gcs.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytusd.stores.gcs.client import Bucket, GCSError, ObjectInfo
    from pytusd.stores.gcs.store import GCSStore

_EXPORTS = {"Bucket": "client", "GCSError": "client", "ObjectInfo": "client", "GCSStore": "store"}

__all__ = ["Bucket", "GCSError", "GCSStore", "ObjectInfo"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
