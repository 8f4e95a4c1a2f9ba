"""The state a store read for a PATCH's handler, passed on to the write that follows.

The upload service reads an upload under its lock (``get_info_to_write``) and then, still under
that lock, writes it (``write_chunk``). A store whose write needs the same state (the GCS store's
objects, the Azure store's block list) would read it twice: one to three requests per PATCH,
each a round trip to the cloud. Nobody else writes while the lock is held, so the first read
may stand in for the second. It is used once, only at the write's offset and if recent (a slow
hook in between: read again), and never after the lock: the service calls
``forget_read_to_write`` before it releases it. Every other change the store makes to the upload
forgets it too.

The S3 store has the same rule, and a memory of its own last write besides
(:mod:`pytusd.stores.s3.recall`).
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

#: How old a read may be to stand in for the write's own (seconds).
HANDOFF_FOR = 1.0
#: Reads kept at most; beyond, those older than HANDOFF_FOR are swept first.
MAX_KEPT = 1000

_S = TypeVar("_S")


class Handoff(Generic[_S]):
    """Per upload, the state its handler read under the lock, kept for one write."""

    def __init__(self, fresh_for: float = HANDOFF_FOR) -> None:
        self.fresh_for = fresh_for
        self._kept: dict[str, tuple[float, _S]] = {}

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    def keep(self, upload_id: str, state: _S) -> None:
        """Keep ``state``, just read under the upload's lock, for the write that follows."""
        self._kept.pop(upload_id, None)  # whatever happens below, an older read is no stand-in
        now = self.now()
        if len(self._kept) >= MAX_KEPT:
            cutoff = now - self.fresh_for
            self._kept = {k: v for k, v in self._kept.items() if v[0] >= cutoff}
            if len(self._kept) >= MAX_KEPT:
                return
        self._kept[upload_id] = (now, state)

    def take(self, upload_id: str) -> _S | None:
        """The kept state, if recent enough; either way it is gone after this."""
        kept = self._kept.pop(upload_id, None)
        if kept is None or self.now() - kept[0] > self.fresh_for:
            return None
        return kept[1]

    def forget(self, upload_id: str) -> None:
        """The upload changes (or goes): what was read of it must not be used."""
        self._kept.pop(upload_id, None)


__all__ = ["HANDOFF_FOR", "Handoff"]
