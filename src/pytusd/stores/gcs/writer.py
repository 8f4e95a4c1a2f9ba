"""One ``write_chunk``: the body spooled to local files, committed as chunks while it arrives.

A tus client may take minutes over one PATCH. So that HEAD, progress responses, post-receive
hooks and a crash see what already reached the server (as with a file store), the bytes spooled
so far are committed as a chunk every :data:`COMMIT_EVERY` seconds, and whenever
``commit_size`` bytes wait. Each commit is a new chunk object (GCS cannot append to an object),
so nothing is uploaded twice; every :data:`COMPOSE_AFTER` chunks, and once the upload is
complete, they are composed into the data object, which keeps the chain short and the data
object's writes rare (GCS allows about one write per second per object name).

Commits run one at a time and in order: a spool whose upload failed stays first in line, and no
later bytes are committed before it, so the chunks never leave a gap. An ``all_or_nothing``
write commits only at its end, once the whole body passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from pytusd.stores.base import StoreError
from pytusd.stores.gcs.client import MAX_COMPOSE_SOURCES, Bucket
from pytusd.stores.gcs.compose import commit_chunk, compact
from pytusd.stores.gcs.layout import Names, content_type
from pytusd.stores.gcs.spool import Spool
from pytusd.stores.gcs.state import State

log = logging.getLogger("pytusd.stores.gcs")

#: Seconds between commits of the bytes spooled while a body arrives.
COMMIT_EVERY = 0.2
#: Chunks of a write composed into the data object while it still arrives.
COMPOSE_AFTER = MAX_COMPOSE_SOURCES - 1


class ChunkWriter:
    """Spools one body (:meth:`feed`) and commits it (:meth:`commit`); :meth:`close` always."""

    def __init__(
        self, bucket: Bucket, names: Names, state: State, new_spool: Callable[[], Spool], *, progressive: bool,
        commit_size: int,
    ) -> None:  # fmt: skip
        self.bucket, self.names, self.state = bucket, names, state
        self.new_spool = new_spool
        self.progressive = progressive
        self.commit_size = commit_size
        self.start = state.offset
        #: Spools waiting for their commit, oldest first; the last one is being filled.
        self.spools: deque[Spool] = deque([new_spool()])
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def written(self) -> int:
        """Bytes of this write committed so far."""
        return self.state.offset - self.start

    def feed(self, data: bytes) -> None:
        spool = self.spools[-1]
        spool.write(data)
        if self.progressive:
            if self._ticker is None:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            if spool.size >= self.commit_size:
                self.spools.append(self.new_spool())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(COMMIT_EVERY)
            try:
                await self.commit()
            except StoreError as exc:
                log.warning("upload %s: could not commit the bytes so far: %s", self.state.info.id, exc)

    async def commit(self) -> None:
        """Commit every byte spooled so far (raises if GCS refuses; what it took stays taken).

        Then compose, but only once the upload is complete or :data:`COMPOSE_AFTER` chunks wait:
        the chunks count as they are, and composing after every commit would copy the growing
        object each time (and GCS allows about one write per second to an object name)."""
        async with self._lock:
            if self.spools[-1].size:
                self.spools.append(self.new_spool())
            while len(self.spools) > 1:
                spool = self.spools[0]
                if spool.size:
                    size = self.state.info.size
                    if size is not None and self.state.offset + spool.size > size:
                        raise StoreError(f"upload {self.state.info.id}: bytes beyond its length")
                    await commit_chunk(self.bucket, self.names, self.state, spool)
                self.spools.popleft().remove()
            if self.state.complete or len(self.state.chunks) >= COMPOSE_AFTER:
                await self.compose()

    async def compose(self) -> None:
        """Compose the chunks into the data object; a failure only defers it (the chunks count)."""
        try:
            await compact(self.bucket, self.names, self.state, content_type(self.state.info))
        except StoreError as exc:
            log.warning("upload %s: compose deferred: %s", self.state.info.id, exc)

    async def close(self) -> None:
        """Stop committing in the background; remove every spool file (committed or not)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        async with self._lock:
            while self.spools:
                self.spools.popleft().remove()
