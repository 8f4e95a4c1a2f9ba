"""The writes that change an upload's bytes: a chunk's upload (the commit point) and compose.

A chunk object counts from the moment it exists (:mod:`.state` chains it after the data object);
composing it into the data object afterwards only tidies up, so every step here may be cut off by
a crash and the next writer (or reader) still sees a correct offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pytusd.stores.base import StoreError
from pytusd.stores.gcs.client import MAX_COMPOSE_SOURCES, Bucket, GCSError, ObjectInfo
from pytusd.stores.gcs.layout import COMPOSE_PREFIX, Names
from pytusd.stores.gcs.spool import Spool
from pytusd.stores.gcs.state import Chunk, State

log = logging.getLogger("pytusd.stores.gcs")


async def commit_chunk(bucket: Bucket, names: Names, state: State, spool: Spool) -> None:
    """Upload ``spool`` as the chunk that starts at the state's offset; from then on it counts.

    The name is created only if absent (``ifGenerationMatch=0``): if another instance wrote a
    chunk at this offset meanwhile (locks misconfigured), this write fails rather than replacing
    bytes that were acknowledged.
    """
    start = state.offset
    name = names.chunk(state.info.id, start)
    try:
        obj = await bucket.put_file(name, spool.path, spool.size, if_absent=True)
    except GCSError as exc:
        if exc.precondition_failed:
            raise StoreError(f"upload {state.info.id}: another writer stored bytes at {start}") from exc
        raise
    state.chunks.append(Chunk(name, start, obj.size, obj.updated))


async def compact(bucket: Bucket, names: Names, state: State, content_type: str) -> None:
    """Compose the state's chunks into the data object, then delete them (and stale objects).

    Each compose appends at most 31 chunks, under ``ifGenerationMatch`` of the data object as it
    was read, so an instance that composed meanwhile makes this one fail instead of dropping its
    bytes. A crash after a compose leaves chunks that now start below the data object's end:
    :mod:`.state` ignores them and the next writer deletes them.
    """
    data_name = names.data(state.info.id)
    done: list[str] = []
    while state.chunks:
        batch = state.chunks[: MAX_COMPOSE_SOURCES - 1]
        sources = [c.name for c in batch]
        if state.data is not None:
            sources.insert(0, data_name)
        state.data = await bucket.compose(data_name, sources, if_generation=state.generation, content_type=content_type)
        del state.chunks[: len(batch)]
        done += [c.name for c in batch]
    await delete_all(bucket, [*done, *state.stale])
    state.stale = []


async def compose_into(
    bucket: Bucket, target: str, sources: Sequence[str], *, if_generation: int, temp_prefix: str, content_type: str
) -> ObjectInfo | None:
    """Make ``target`` the concatenation of any number of ``sources`` with one final compose.

    Above 32 sources, groups are composed into temporary objects (``temp_prefix`` + n) first, in
    as many rounds as needed; only the last compose touches ``target``, so it changes all at once
    or not at all. Returns None if there were no sources (``target`` is left as it is).
    """
    temps: list[str] = []
    level = list(sources)
    try:
        while len(level) > MAX_COMPOSE_SOURCES:
            grouped: list[str] = []
            for i in range(0, len(level), MAX_COMPOSE_SOURCES):
                name = f"{temp_prefix}{COMPOSE_PREFIX}{len(temps)}"
                await bucket.compose(name, level[i : i + MAX_COMPOSE_SOURCES], content_type=content_type)
                temps.append(name)
                grouped.append(name)
            level = grouped
        if not level:
            return None
        return await bucket.compose(target, level, if_generation=if_generation, content_type=content_type)
    finally:
        try:
            await delete_all(bucket, temps)
        except StoreError as exc:  # left for the next writer of ``target`` (state.stale)
            log.warning("could not delete intermediate objects of %s: %s", target, exc)


async def delete_all(bucket: Bucket, names: Sequence[str]) -> None:
    """Delete every object named; all are attempted, then the first failure is raised."""
    for result in await asyncio.gather(*(bucket.delete(n) for n in names), return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
