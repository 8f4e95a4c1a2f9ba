"""An upload's state, read back from S3: nothing about an upload lives only in a server's memory.

The offset is recomputed from S3 on every call, as the sizes of the committed parts (ListParts, up
to the count the incomplete-part object names) plus the size of the incomplete part, or the size
of the finished object. The reads are made together and may interleave with a writer; why every
combination still describes a state the upload really was in is explained in the package docs.
The info object is read and written here too: it is the upload's existence.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass

from pytusd.info import UploadInfo
from pytusd.stores.base import InvalidStorage, StoreError, UploadExists, UploadNotFound
from pytusd.stores.s3.client import ObjectHead, ObjectStorage, Part, S3Error
from pytusd.stores.s3.layout import (
    META_COMMIT,
    META_COMPLETE,
    META_MULTIPART,
    META_PARTS,
    STORAGE_MULTIPART,
    KeyLayout,
    is_pending_part,
    pending_part,
    run_of,
)
from pytusd.stores.s3.parts import MAX_PARTS

logger = logging.getLogger("pytusd.s3")


@dataclass(slots=True)
class State:
    """An upload as S3 holds it right now."""

    info: UploadInfo
    multipart: str
    #: The finished object, once the upload is complete.
    completed: ObjectHead | None
    #: Committed parts, numbered 1..len(parts).
    parts: list[Part]
    #: The incomplete part, if one counts.
    tail: ObjectHead | None
    #: S3 listed no part above the counted ones (none from a failed try, none still to land as far
    #: as anyone can know): a write without MD5s may then name its part as pending (see
    #: writer._lone_part). False where it was not looked for.
    clean: bool = False

    @property
    def stored(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def offset(self) -> int:
        if self.completed is not None:
            return self.completed.size
        return self.stored + (self.tail.size if self.tail is not None else 0)

    @property
    def full(self) -> bool:
        """Every byte is there but the multipart upload is not completed yet."""
        return self.completed is None and self.info.size is not None and self.offset == self.info.size


class KnownParts:
    """Part lists of commits this process made or read, by the commit's random name.

    ListParts is the slowest call of a state read (on Swift 30 ms, against 8 for a HEAD), and
    its answer for a given commit never changes: parts up to the committed count are never
    rewritten. So the part list is remembered under the name the commit wrote into the
    incomplete part's metadata; a read whose HEAD shows that name again needs no listing. A
    commit by anyone else has another name, and is listed once. Bounded by parts held.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._lists: OrderedDict[str, tuple[str, tuple[Part, ...]]] = OrderedDict()
        self._held = 0

    def get(self, upload_id: str, commit: str, count: int) -> list[Part] | None:
        entry = self._lists.get(upload_id)
        if entry is None or not commit or entry[0] != commit or len(entry[1]) != count:
            return None
        self._lists.move_to_end(upload_id)
        return list(entry[1])

    def put(self, upload_id: str, commit: str, parts: list[Part]) -> None:
        self.drop(upload_id)
        if not commit or len(parts) > self.limit:
            return
        self._lists[upload_id] = (commit, tuple(parts))
        self._held += len(parts)
        while self._held > self.limit:
            _, (_, old) = self._lists.popitem(last=False)
            self._held -= len(old)

    def drop(self, upload_id: str) -> None:
        entry = self._lists.pop(upload_id, None)
        if entry is not None:
            self._held -= len(entry[1])


async def load_info(client: ObjectStorage, keys: KeyLayout, upload_id: str) -> UploadInfo | None:
    """The upload's info object, or None: without it there is no upload, whatever else is there."""
    raw = await client.get_bytes(keys.info_key(upload_id))
    if raw is None:
        return None
    try:
        info = UploadInfo.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"corrupt info object for upload {upload_id}") from exc
    info.id = upload_id
    return info


async def put_info(client: ObjectStorage, keys: KeyLayout, info: UploadInfo) -> None:
    """Write the info object (tusd's JSON); one PutObject, so readers see the old one or the new."""
    data = json.dumps(info.to_json(), separators=(",", ":")).encode()
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    await client.put(keys.info_key(info.id), data, len(data), md5, content_type="application/json")


async def read_state(
    client: ObjectStorage,
    keys: KeyLayout,
    upload_id: str,
    *,
    finals: bool = False,
    known: KnownParts | None = None,
    look_above: bool = False,
) -> State:
    """The upload as S3 holds it; with ``finals``, a partial's pending finals included; ``known``
    part lists spare a listing; ``look_above`` finds out :attr:`State.clean` (a request more)."""
    part_key = keys.part_key(upload_id)

    info, tail = await asyncio.gather(load_info(client, keys, upload_id), client.head(part_key))
    if info is None:
        raise UploadNotFound(upload_id)
    # The data key comes from the info object (a hook may have chosen it): no request of its own.
    key = keys.data_key(info)
    finished = None
    if not _in_progress(info, tail):
        # No incomplete part (no write yet, or a 0-byte upload) or a completion marker: the
        # finished object may exist. Beside an incomplete part it can only if every byte is
        # there (see data_state), so most reads of an upload in progress cost one request less.
        finished = await client.head(key)
    if not (finals and info.is_partial):
        return await data_state(client, keys, info, tail, finished, known, look_above=look_above)
    # Listed beside the data's state, not after it: a partial's HEAD costs one request more,
    # no extra round trip.
    state, waiting = await asyncio.gather(
        data_state(client, keys, info, tail, finished, known, look_above=look_above),
        pending_finals(client, keys, upload_id),
    )
    info.pending_finals += [f for f in waiting if f not in info.pending_finals]
    return state


def _in_progress(info: UploadInfo, tail: ObjectHead | None) -> bool:
    """Whether the incomplete part says the upload is unfinished (then it has no object yet)."""
    return (
        tail is not None
        and not tail.metadata.get(META_COMPLETE)
        and tail.metadata.get(META_MULTIPART) == info.storage.get(STORAGE_MULTIPART, "")
    )


async def pending_finals(client: ObjectStorage, keys: KeyLayout, upload_id: str) -> list[str]:
    prefix = keys.finals_prefix(upload_id)
    return [key[len(prefix) :] async for key in client.list_keys(prefix)]


async def data_state(
    client: ObjectStorage,
    keys: KeyLayout,
    info: UploadInfo,
    tail: ObjectHead | None,
    finished: ObjectHead | None,
    known: KnownParts | None = None,
    *,
    look_above: bool = False,
    tries: int = 3,
) -> State:
    upload_id, key = info.id, keys.data_key(info)
    multipart = info.storage.get(STORAGE_MULTIPART, "")
    if finished is not None:
        return State(info, multipart, finished, [], None)
    if tail is not None and tail.metadata.get(META_COMPLETE):
        # Completed after the object was looked at: look again.
        return await finished_or_gone(client, keys, info, multipart, "its object is missing")
    if tail is not None and tail.metadata.get(META_MULTIPART) != multipart:
        tail = None  # left over from something else under the same key
    count = parse_count(tail, upload_id)
    pending = pending_part(tail.metadata, count) if tail is not None else None
    # A run grows without new commits: its parts are listed whole, never remembered.
    run = run_of(tail.metadata) if tail is not None and tail.size == 0 and pending is None else None
    # Parts above these were never counted: a look finds out whether there are any.
    above = count + 1 if pending is not None else count
    try:
        if not multipart:
            return await _unless_completed(client, key, State(info, multipart, None, [], tail))
        if count == 0 and pending is None and run is None:
            clean = look_above and not await client.part_after(key, multipart, 0)
            return await _unless_completed(client, key, State(info, multipart, None, [], tail, clean))
        commit = tail.metadata.get(META_COMMIT, "") if tail is not None else ""
        remembered = known.get(upload_id, commit, above) if known is not None and run is None else None
        if remembered is not None:
            # A pending part is remembered only once it has landed: then the list is one longer.
            clean = look_above and not await client.part_after(key, multipart, above)
            return await _unless_completed(client, key, State(info, multipart, None, remembered, tail, clean))
        if run is not None:
            # Every part is listed, so what lies beyond the run is known without a look.
            listed, beyond = await client.list_parts(key, multipart, MAX_PARTS), False
        else:
            listing = client.list_parts(key, multipart, above)
            if look_above:
                listed, beyond = await asyncio.gather(listing, client.part_after(key, multipart, above))
            else:
                listed, beyond = await listing, True
    except S3Error as exc:
        if not exc.not_found:
            raise
        return await finished_or_gone(client, keys, info, multipart, "its multipart upload is gone")
    by_number = {p.number: p for p in listed}
    parts = [by_number.get(n) for n in range(1, count + 1)]
    if any(p is None for p in parts):
        # Completed between our reads? Else S3 lost parts that were committed.
        finished = await client.head(key)
        if finished is not None:
            return State(info, multipart, finished, [], None)
        raise StoreError(f"upload {upload_id}: committed parts are missing from its multipart upload")
    found = [p for p in parts if p is not None]
    if run is not None:
        # Parts 1..count are all found: the run goes on from count + 1 while S3 lists its parts.
        while (landed := by_number.get(len(found) + 1)) is not None and landed.size == run[1]:
            found.append(landed)
        if len(found) > count:
            # Only while the run stands are the parts after it the client's bytes at their place
            # (a write that may land others ends it first): it must still stand after the listing.
            again = await client.head(keys.part_key(upload_id))
            if again is None or again.metadata.get(META_COMMIT) != commit:
                if tries <= 1:
                    del found[count:]  # the run's start: a state the upload was in
                else:
                    return await data_state(
                        client, keys, info, again, None, known, look_above=look_above, tries=tries - 1
                    )
        # Clean only if nothing is listed beyond the parts counted (a leftover of a failed try).
        clean = not any(number > len(found) for number in by_number)
        return await _unless_completed(client, key, State(info, multipart, None, found, tail, clean))
    if pending is not None:
        landed = by_number.get(count + 1)
        if landed is None or not is_pending_part(landed.size, landed.etag, pending):
            # Not (yet) there, or something else under its number: the part does not count,
            # and no list is remembered (it may still land under this commit; nor is it clean).
            return await _unless_completed(client, key, State(info, multipart, None, found, tail))
        found.append(landed)
    if known is not None:
        known.put(upload_id, commit, found)
    return await _unless_completed(client, key, State(info, multipart, None, found, tail, not beyond))


async def _unless_completed(client: ObjectStorage, key: str, state: State) -> State:
    """``state``, read without looking for the finished object: if every byte is there, the
    upload may have been completed since its incomplete part was read, so look now."""
    if state.full:
        finished = await client.head(key)
        if finished is not None:
            return State(state.info, state.multipart, finished, [], None)
    return state


async def finished_or_gone(client: ObjectStorage, keys: KeyLayout, info: UploadInfo, multipart: str, why: str) -> State:
    finished = await client.head(keys.data_key(info))
    if finished is not None:
        return State(info, multipart, finished, [], None)
    logger.warning("upload %s has an info object but no data (%s)", info.id, why)
    raise UploadNotFound(info.id)


def parse_count(tail: ObjectHead | None, upload_id: str) -> int:
    if tail is None:
        return 0
    try:
        count = int(tail.metadata.get(META_PARTS, "0"))
    except ValueError:
        raise StoreError(f"upload {upload_id}: unreadable incomplete-part metadata") from None
    if count < 0:
        raise StoreError(f"upload {upload_id}: unreadable incomplete-part metadata")
    return count


async def check_free(client: ObjectStorage, keys: KeyLayout, upload_id: str, chosen: str | None) -> None:
    """Refuse a new upload whose ID is taken (UploadExists), or whose chosen data key is (409):
    by an upload whose ID names it, a finished object, or a multipart upload in progress."""
    checks: list[Awaitable[object]] = [client.head(keys.info_key(upload_id))]
    if chosen is not None:
        named = keys.info_key(chosen[len(keys.object_prefix) :])
        checks += [client.head(named), client.head(chosen), client.uploading(chosen)]
    found = await asyncio.gather(*checks)
    if found[0] is not None:
        raise UploadExists(upload_id)
    if any(f not in (None, False) for f in found[1:]):
        # Best effort: two creations choosing one key at the same moment are not told apart.
        raise InvalidStorage("Storage.Key names an object that exists or is being uploaded", 409)
