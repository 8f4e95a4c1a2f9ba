"""The DataStore contract (pytusd.stores.base), one suite for every store.

Each case is a scenario on a fresh, started store; it runs here on MemoryStore, FileStore, and
S3Store, GCSStore and AzureStore on in-memory fakes (tests/support/fake_{s3,gcs,azure}.py), and in
the object-store passes on a real Swift, a GCS emulator and Azurite
(tests/integration/test_store_contract_{s3,gcs,azure}.py import :data:`CASES`). Where stores may
differ the contract says so, and :class:`Kind` says how each store chose: nothing else may differ.
What a store does beyond the contract is in its own tests (test_file_store.py, test_s3_writer.py,
test_gcs_store.py, test_azure_store.py, tests/integration/test_s3_store.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.azure.layout import MAX_BLOB_SIZE
from pytusd.stores.azure.store import AzureStore
from pytusd.stores.base import DataStore, DirectSource, UploadExists, UploadNotFound, UploadTooLarge
from pytusd.stores.file import FileStore
from pytusd.stores.gcs import GCSStore
from pytusd.stores.gcs.layout import MAX_OBJECT_SIZE as GCS_MAX_OBJECT_SIZE
from pytusd.stores.memory import MemoryStore
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.parts import MAX_OBJECT_SIZE
from tests.support.fake_azure import FakeAzure
from tests.support.fake_gcs import FakeGCS
from tests.support.fake_s3 import FakeS3


@dataclass(frozen=True)
class Kind:
    """How a store answers where the contract leaves a choice."""

    name: str
    #: A DirectSource is asked to write itself into a descriptor (else it is iterated).
    direct: bool = False
    #: Uploads larger than this are refused with UploadTooLarge (None: no limit).
    max_size: int | None = None


MEMORY = Kind("memory")
FILE = Kind("file", direct=True)
S3 = Kind("s3", direct=True, max_size=MAX_OBJECT_SIZE)
GCS = Kind("gcs", max_size=GCS_MAX_OBJECT_SIZE)
AZURE = Kind("azure", max_size=MAX_BLOB_SIZE)

Case = Callable[[DataStore, Kind], Awaitable[None]]
#: Every case of the contract, in the order written.
CASES: list[Case] = []
#: Known breaches of the contract, by store kind and case name (run as strict xfails, so that a
#: fix shows up).
BREACHES: dict[tuple[str, str], str] = {
    ("s3", "an_empty_range_reads_nothing"): (
        "S3Store.read(id, s, e) with e <= s asks S3 for the invalid Range bytes=s-(s-1), which S3"
        " ignores: the whole finished object comes back. No caller does this (the handler and the"
        " IETF digest check skip empty ranges)."
    ),
}


def case(scenario: Case) -> Case:
    CASES.append(scenario)
    return scenario


def case_id(scenario: Case) -> str:
    return scenario.__name__


def mark_breach(request: pytest.FixtureRequest, kind: Kind, scenario: Case) -> None:
    reason = BREACHES.get((kind.name, scenario.__name__))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


class Boom(Exception):
    """A source that fails, like a body whose checksum does not match or whose client vanished."""


async def chunks(parts: Iterable[bytes], fail_after: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part
    if fail_after:
        raise Boom


class Direct(DirectSource):
    """A body that can write itself into a descriptor; remembers how it was consumed."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.used: str | None = None
        self.position = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        self.used = "iterated"
        return chunks(self.parts)

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        self.used = "direct"
        data = b"".join(self.parts)
        end = len(data) if limit is None else min(len(data), self.position + limit)
        written = 0
        while self.position < end:
            n = os.write(fd, data[self.position : end])
            self.position += n
            written += n
            if moved is not None:
                moved(n)
        return written


async def content(store: DataStore, upload_id: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([block async for block in store.read(upload_id, start, end)])


def new(upload_id: str = "up", size: int | None = 10, **fields: Any) -> UploadInfo:
    return UploadInfo(id=upload_id, size=size, created_at=1_700_000_000.5, **fields)


# -- create / get_info ---------------------------------------------------------------------------


@case
async def create_then_get_info(store: DataStore, kind: Kind) -> None:
    created = await store.create(new(metadata={"filename": "a.txt", "empty": ""}, is_partial=True))
    assert created.offset == 0
    info = await store.get_info("up")
    assert (info.id, info.size, info.offset) == ("up", 10, 0)
    assert info.metadata == {"filename": "a.txt", "empty": ""}
    assert info.is_partial and not info.is_final
    assert info.created_at == 1_700_000_000.5
    assert info.pending_finals == []


@case
async def deferred_length_and_declare_length(store: DataStore, kind: Kind) -> None:
    await store.create(new(size=None))
    info = await store.get_info("up")
    assert info.size is None and info.size_is_deferred
    await store.declare_length("up", 7)
    assert (await store.get_info("up")).size == 7


@case
async def declaring_the_length_of_the_bytes_held_completes(store: DataStore, kind: Kind) -> None:
    await store.create(new(size=None))
    assert await store.write_chunk("up", 0, chunks([b"abc", b"de"])) == 5
    await store.declare_length("up", 5)
    info = await store.get_info("up")
    assert (info.size, info.offset, info.is_complete) == (5, 5, True)
    assert await content(store, "up") == b"abcde"


@case
async def create_twice_is_refused(store: DataStore, kind: Kind) -> None:
    await store.create(new())
    with pytest.raises(UploadExists):
        await store.create(new(size=99))
    assert (await store.get_info("up")).size == 10


@case
async def too_large_is_refused_and_leaves_nothing(store: DataStore, kind: Kind) -> None:
    if kind.max_size is None:
        await store.create(new(size=6 * 1024**4))  # declared, not stored: any size will do
        assert (await store.get_info("up")).size == 6 * 1024**4
        return
    with pytest.raises(UploadTooLarge):
        await store.create(new(size=kind.max_size + 1))
    with pytest.raises(UploadNotFound):
        await store.get_info("up")
    assert [u async for u in store.list_uploads()] == []
    await store.create(new(size=kind.max_size))  # the limit itself is fine
    assert (await store.get_info("up")).size == kind.max_size


@case
async def unknown_upload_is_not_found_everywhere(store: DataStore, kind: Kind) -> None:
    with pytest.raises(UploadNotFound):
        await store.get_info("nope")
    with pytest.raises(UploadNotFound):
        await store.write_chunk("nope", 0, chunks([b"x"]))
    with pytest.raises(UploadNotFound):
        await store.write_chunk("nope", 0, chunks([b"x"]), all_or_nothing=True)
    with pytest.raises(UploadNotFound):
        await store.update_info(new("nope"))
    with pytest.raises(UploadNotFound):
        await store.declare_length("nope", 3)
    with pytest.raises(UploadNotFound):
        await store.add_pending_final("nope", "final")
    with pytest.raises(UploadNotFound):
        await store.terminate("nope")
    with pytest.raises(UploadNotFound):
        await content(store, "nope")
    with pytest.raises(UploadNotFound):
        await store.last_write_time("nope")


@case
async def get_info_returns_a_snapshot(store: DataStore, kind: Kind) -> None:
    await store.create(new(metadata={"a": "1"}))
    info = await store.get_info("up")
    info.metadata["a"] = "changed"
    info.pending_finals.append("x")
    info.size = 1
    again = await store.get_info("up")
    assert (again.metadata, again.pending_finals, again.size) == ({"a": "1"}, [], 10)


# -- write_chunk -----------------------------------------------------------------------------------


@case
async def write_chunk_appends_and_offset_follows_the_data(store: DataStore, kind: Kind) -> None:
    await store.create(new(size=11))
    assert await store.write_chunk("up", 0, chunks([b"hel", b"lo"])) == 5
    assert (await store.get_info("up")).offset == 5
    assert await store.write_chunk("up", 5, chunks([])) == 0
    assert await store.write_chunk("up", 5, chunks([b" ", b"world"])) == 6
    info = await store.get_info("up")
    assert info.offset == 11 and info.is_complete
    assert await content(store, "up") == b"hello world"


@case
async def failing_source_keeps_what_it_yielded(store: DataStore, kind: Kind) -> None:
    await store.create(new())
    await store.write_chunk("up", 0, chunks([b"ab"]))
    with pytest.raises(Boom):
        await store.write_chunk("up", 2, chunks([b"cd", b"ef"], fail_after=True))
    assert (await store.get_info("up")).offset == 6
    assert await content(store, "up") == b"abcdef"


@case
async def all_or_nothing_discards_everything_when_the_source_fails(store: DataStore, kind: Kind) -> None:
    await store.create(new())
    await store.write_chunk("up", 0, chunks([b"ab"]))
    with pytest.raises(Boom):
        await store.write_chunk("up", 2, chunks([b"cd", b"ef"], fail_after=True), all_or_nothing=True)
    assert (await store.get_info("up")).offset == 2
    assert await content(store, "up") == b"ab"
    # ... and appends the whole chunk when it succeeds.
    assert await store.write_chunk("up", 2, chunks([b"cd", b"ef"]), all_or_nothing=True) == 4
    assert (await store.get_info("up")).offset == 6
    assert await content(store, "up") == b"abcdef"


@case
async def a_direct_source_is_written_like_any_other(store: DataStore, kind: Kind) -> None:
    await store.create(new(size=9))
    await store.write_chunk("up", 0, chunks([b"abc"]))
    source = Direct([b"def", b"ghi"])
    assert await store.write_chunk("up", 3, source) == 6
    assert source.used == ("direct" if kind.direct else "iterated")
    info = await store.get_info("up")
    assert (info.offset, info.is_complete) == (9, True)
    assert await content(store, "up") == b"abcdefghi"


@case
async def many_chunks_in_one_write(store: DataStore, kind: Kind) -> None:
    parts = [bytes([i]) * (1000 + i) for i in range(200)]
    total = sum(map(len, parts))
    await store.create(new(size=total))
    assert await store.write_chunk("up", 0, chunks(parts)) == total
    assert await content(store, "up") == b"".join(parts)


@case
async def read_ranges(store: DataStore, kind: Kind) -> None:
    data = bytes(range(256)) * 40
    await store.create(new(size=len(data) + 5))
    await store.write_chunk("up", 0, chunks([data]))
    for upload_done in (False, True):
        offset = len(data) + 5 * upload_done
        expected = data + b"tail!" * upload_done
        assert await content(store, "up") == expected
        assert await content(store, "up", 995, 1005) == expected[995:1005]
        assert await content(store, "up", 3) == expected[3:]
        assert await content(store, "up", offset - 3) == expected[-3:]
        assert await content(store, "up", 0, offset) == expected
        if not upload_done:
            await store.write_chunk("up", len(data), chunks([b"tail!"]))
            assert (await store.get_info("up")).is_complete


@case
async def an_empty_range_reads_nothing(store: DataStore, kind: Kind) -> None:
    await store.create(new(size=10))
    await store.write_chunk("up", 0, chunks([b"0123456789"]))
    assert await content(store, "up", 5, 5) == b""


@case
async def last_write_time_moves_with_writes(store: DataStore, kind: Kind) -> None:
    await store.create(new())
    before = await store.last_write_time("up")
    await asyncio.sleep(0.05)
    await store.write_chunk("up", 0, chunks([b"x"]))
    assert await store.last_write_time("up") > before


# -- update_info, pending finals -------------------------------------------------------------------


@case
async def update_info_persists_fields_but_not_the_offset(store: DataStore, kind: Kind) -> None:
    await store.create(new())
    await store.write_chunk("up", 0, chunks([b"abc"]))
    info = await store.get_info("up")
    info.metadata = {"k": "v"}
    info.pending_finals = ["final-1"]
    info.storage = {**info.storage, "Extra": "1"}
    info.offset = 9  # a stale or wrong counter must never become the offset
    await store.update_info(info)
    again = await store.get_info("up")
    assert again.metadata == {"k": "v"}
    assert again.pending_finals == ["final-1"]
    assert again.storage["Extra"] == "1"
    assert again.offset == 3


@case
async def pending_finals_are_added_once_and_survive_a_declared_length(store: DataStore, kind: Kind) -> None:
    await store.create(new("part", size=None, is_partial=True))
    await store.add_pending_final("part", "f1")
    await store.add_pending_final("part", "f1")
    await store.declare_length("part", 4)
    await store.add_pending_final("part", "f2")
    info = await store.get_info("part")
    assert (info.size, info.pending_finals) == (4, ["f1", "f2"])


# -- terminate, concatenate, list ------------------------------------------------------------------


@case
async def terminate_removes_the_upload(store: DataStore, kind: Kind) -> None:
    await store.create(new())
    await store.write_chunk("up", 0, chunks([b"abc"]))
    await store.terminate("up")
    with pytest.raises(UploadNotFound):
        await store.get_info("up")
    with pytest.raises(UploadNotFound):
        await content(store, "up")
    with pytest.raises(UploadNotFound):
        await store.terminate("up")
    assert [u async for u in store.list_uploads()] == []
    await store.create(new())  # the ID is free again
    assert (await store.get_info("up")).offset == 0
    assert await content(store, "up") == b""


@case
async def concatenate_joins_partials_in_order(store: DataStore, kind: Kind) -> None:
    parts = {"p1": b"hello ", "p2": b"", "p3": b"world" * 1000}
    for pid, data in parts.items():
        await store.create(new(pid, size=len(data), is_partial=True))
        await store.write_chunk(pid, 0, chunks([data]))
    final = await store.create(new("final", size=None, is_final=True, partial_uploads=["p3", "p1", "p2"]))
    partials = [await store.get_info(pid) for pid in ("p3", "p1", "p2")]
    await store.concatenate(final, partials)
    expected = parts["p3"] + parts["p1"] + parts["p2"]
    assert (await store.get_info("final")).offset == len(expected)
    assert await content(store, "final") == expected
    assert await content(store, "final", 5000, 5003) == b"hel"
    for pid, data in parts.items():  # partials are untouched
        assert await content(store, pid) == data


@case
async def list_uploads_lists_every_upload_once(store: DataStore, kind: Kind) -> None:
    ids = {"a", "b", "user1/c", "user1/deep/d"}
    for uid in sorted(ids):
        await store.create(new(uid))
    listed = [u async for u in store.list_uploads()]
    assert sorted(listed) == sorted(ids)
    await store.terminate("b")
    assert sorted([u async for u in store.list_uploads()]) == sorted(ids - {"b"})


@case
async def ids_with_slashes_are_uploads_of_their_own(store: DataStore, kind: Kind) -> None:
    await store.create(new("user1/a", size=3))
    await store.create(new("user2/a", size=3))
    await store.write_chunk("user1/a", 0, chunks([b"one"]))
    await store.write_chunk("user2/a", 0, chunks([b"two"]))
    assert await content(store, "user1/a") == b"one"
    assert await content(store, "user2/a") == b"two"
    await store.terminate("user1/a")
    assert await content(store, "user2/a") == b"two"


# -- the stores, here ------------------------------------------------------------------------------


def run_case(scenario: Case, store: DataStore, kind: Kind) -> None:
    """Start ``store``, run the case on it (a hang fails after 30 s), close it."""

    async def main() -> None:
        await store.start()
        try:
            await asyncio.wait_for(scenario(store, kind), 30)
        finally:
            await store.close()

    asyncio.run(main())


def make_store(name: str, tmp_path: Path) -> tuple[DataStore, Kind]:
    if name == "memory":
        return MemoryStore(), MEMORY
    if name == "file":
        return FileStore(tmp_path / "uploads"), FILE
    if name == "gcs-fake":
        return GCSStore("bucket", client=FakeGCS(), object_prefix="tus/", spool_dir=str(tmp_path / "spool")), GCS
    if name == "azure-fake":
        return AzureStore("container", FakeAzure(), object_prefix="tus/", block_size=4096), AZURE
    return S3Store("bucket", client=FakeS3(), object_prefix="tus/", temp_dir=str(tmp_path)), S3


@pytest.mark.parametrize("scenario", CASES, ids=case_id)
@pytest.mark.parametrize("name", ["memory", "file", "s3-fake", "gcs-fake", "azure-fake"])
def test_contract(name: str, scenario: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store, kind = make_store(name, tmp_path)
    mark_breach(request, kind, scenario)
    run_case(scenario, store, kind)
