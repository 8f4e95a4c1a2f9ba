"""An upload's state read back from GCS: its info, and its offset from the objects that hold its bytes.

Nothing is kept in memory between requests: every call reads this again, so a restarted server or
another instance sees exactly what GCS holds.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from pytusd.info import UploadInfo
from pytusd.stores.base import StoreError, UploadNotFound
from pytusd.stores.gcs.client import Bucket, ObjectInfo
from pytusd.stores.gcs.layout import CHUNKS_SUFFIX, FINALS_SUFFIX, Names, chunk_start


@dataclass(slots=True)
class Chunk:
    name: str
    start: int
    size: int
    updated: float

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(slots=True)
class State:
    info: UploadInfo
    #: The data object (None: not written yet, which counts as empty).
    data: ObjectInfo | None
    #: Chunks not yet composed, in order: the first starts where the data object ends, each where
    #: the one before ends. These bytes count.
    chunks: list[Chunk] = field(default_factory=list)
    #: Objects left behind by an interrupted write or concatenation (already inside the data
    #: object, or never part of it); a writer deletes them under the lock.
    stale: list[str] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        """Bytes in the data object."""
        return 0 if self.data is None else self.data.size

    @property
    def offset(self) -> int:
        return self.chunks[-1].end if self.chunks else self.stored

    @property
    def complete(self) -> bool:
        """Every byte of a known length is held."""
        return self.info.size is not None and self.offset == self.info.size

    @property
    def generation(self) -> int:
        """The data object's generation for a precondition (0: must not exist)."""
        return 0 if self.data is None else self.data.generation

    @property
    def last_write(self) -> float | None:
        times = [c.updated for c in self.chunks] + ([self.data.updated] if self.data is not None else [])
        return max(times) if times else None


async def load_info(bucket: Bucket, names: Names, upload_id: str) -> UploadInfo | None:
    """The upload's info object, or None: without it there is no upload, whatever else is there."""
    raw = await bucket.get_bytes(names.info(upload_id))
    return None if raw is None else parse_info(upload_id, raw)


def parse_info(upload_id: str, raw: bytes) -> UploadInfo:
    try:
        info = UploadInfo.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"corrupt info object for upload {upload_id}") from exc
    info.id = upload_id
    return info


async def put_info(bucket: Bucket, names: Names, info: UploadInfo, *, if_absent: bool = False) -> None:
    """Write the info object (tusd's JSON); one request, so readers see the old one or the new.

    Stored as application/octet-stream, as tusd does: the emulator parses an upload sent as
    application/json as if it were a request."""
    data = json.dumps(info.to_json(), separators=(",", ":")).encode()
    await bucket.put_bytes(names.info(info.id), data, if_absent=if_absent)


async def read_state(bucket: Bucket, names: Names, upload_id: str) -> State:
    """The upload as GCS holds it.

    The upload's own objects are listed *before* the data object is read. A writer makes a chunk
    part of the data object (compose) before it deletes the chunk, and the data object only
    grows, so whatever a writer does meanwhile this sees a state the upload really was in: a chunk
    listed but composed by the time the data object is read starts below its end and is not
    counted twice; a chunk written after the listing is simply not seen yet.
    """
    listed, info = await asyncio.gather(own_objects(bucket, names, upload_id), load_info(bucket, names, upload_id))
    if info is None:
        raise UploadNotFound(upload_id)
    data = await bucket.stat(names.data(upload_id))
    chunks_prefix = names.chunks(upload_id)
    finals_prefix = names.finals(upload_id)
    state = State(info, data)
    found: list[Chunk] = []
    for obj in listed:
        start = chunk_start(obj.name, chunks_prefix)
        if start is not None:
            found.append(Chunk(obj.name, start, obj.size, obj.updated))
        elif obj.name.startswith(chunks_prefix):
            state.stale.append(obj.name)  # an intermediate object of a concatenation
        elif obj.name.startswith(finals_prefix):
            state.finals.append(obj.name[len(finals_prefix) :])
    end = state.stored
    for chunk in sorted(found, key=lambda c: c.start):
        if chunk.start == end and chunk.size > 0:
            state.chunks.append(chunk)
            end = chunk.end
        else:
            state.stale.append(chunk.name)
    for final in state.finals:
        if final not in info.pending_finals:
            info.pending_finals.append(final)
    return state


async def own_objects(bucket: Bucket, names: Names, upload_id: str) -> list[ObjectInfo]:
    """The upload's chunks, intermediates and final markers (not its data and info objects)."""
    prefix = names.own(upload_id)
    # ``<id>.`` also lists other uploads whose ID continues with a dot ("a" and "a.b"): keep only
    # this upload's own names.
    own = (prefix + CHUNKS_SUFFIX[1:], prefix + FINALS_SUFFIX[1:])
    return [obj async for obj in bucket.list(prefix) if obj.name.startswith(own)]
