"""Uploads in an Azure Blob Storage container, after tusd's azurestore.

Blobs per upload ``<id>`` (see docs/azure.md for the whole story), below ``--azure-object-prefix``:

``<prefix><id>``
    A block blob with the upload's bytes. Its *committed* size is the offset: a restarted server,
    or another instance, recomputes the offset from Azure alone (Get Blob Properties), and nothing
    about an upload lives only in memory. It has no committed version until the first bytes are.
``<prefix><id>.info``
    tusd's ``.info`` JSON (``Storage``: ``Type: azurestore``, ``Container``, ``Key``). It is the
    upload's existence: created last (If-None-Match: *, so one creator wins), deleted first.
``<prefix><id>.finals/<final-id>``
    For a partial upload, one empty blob per final upload waiting for it: a final is added
    without the partial's lock, and creating a blob is atomic where rewriting the info is not.

**Commit point.** A PATCH stages blocks (Put Block) while its body arrives, one every block size
(8 MiB; more for uploads so large that 50,000 blocks would not hold them), so memory stays
bounded. Staged blocks are invisible until a Put Block List names them: that one atomic request
is the commit, made after every block, while a slow body pauses (:mod:`.writer`) and at the end
of the request, before the offset is acknowledged. An ``all_or_nothing`` write (a checksum)
commits only at its end, so a chunk that fails never counts. A body that breaks off keeps what
arrived: its rest is staged and committed.

**Crash windows.** A crash between Put Block and Put Block List loses only unacknowledged bytes;
the staged blocks are garbage (random 32-hex-digit IDs, never reused), discarded by the next Put
Block List of the blob or by Azure after a week. A crash in terminate after the info blob is
deleted leaves an unreachable data blob; creating the ID again deletes it first. A crash in
concatenation before its Put Block List leaves the final empty; the concatenation is retried.

**Limits** (:mod:`.layout`): a block holds at most 4000 MiB, a blob at most 50,000 committed
blocks (so at most about 190.7 TiB), all block IDs of a blob have the same length, and
uncommitted blocks are discarded after a week. Requests shorter than a block would make a small
block each; the last block is therefore merged into the next one while it is smaller than the
block size (its bytes read back once), so every block but the last is full.

**Concatenation** copies each partial with Put Block From URL (in ranges of at most 4000 MiB,
the source authorized by a read-only SAS valid for an hour, made from the account key), then
commits all the blocks with one Put Block List: all or nothing, no byte through this server.

The modules, each with one job (imports point down this list, never up):

* :mod:`.flags` -- the command-line flags, and the store they build (imported only then);
* :mod:`.store` -- :class:`AzureStore`, the DataStore contract on the blobs above;
* :mod:`.writer` -- one ``write_chunk``: blocks staged while the body arrives, and the commits;
* :mod:`.layout` -- blob names, Storage fields, block IDs and sizes: pure, no I/O;
* :mod:`.sdk` -- the real client, on azure-storage-blob's asyncio API, implementing...
* :mod:`.client` -- ...:class:`BlobStorage`, the calls the store makes, as a typed interface
  (the unit tests implement it in memory: tests/support/fake_azure.py).

The names below are imported on first use, not with the package: the command line imports
:mod:`.flags` on every start, and a file-store server should not load the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytusd.stores.azure.client import AzureError, AzureUnavailable, BlobStorage
    from pytusd.stores.azure.store import AzureStore

_EXPORTS = {
    "AzureError": "client",
    "AzureUnavailable": "client",
    "AzureStore": "store",
    "BlobStorage": "client",
}

__all__ = ["AzureError", "AzureStore", "AzureUnavailable", "BlobStorage"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
