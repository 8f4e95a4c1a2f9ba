"""A PATCH reads its upload once on GCS and Azure: the handler's read stands in for the write's
(pytusd.stores.handoff), and only when it may: recent, at the write's offset, used once, never
after the lock (the service says when it releases it), and forgotten by every other change of the
upload. On the in-memory buckets, counting requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytusd.info import UploadInfo
from pytusd.locks.memory import MemoryLocker
from pytusd.stores.azure.store import AzureStore
from pytusd.stores.base import DataStore, StoreError, StoreUnavailable
from pytusd.stores.gcs import GCSStore
from pytusd.stores.handoff import MAX_KEPT, Handoff
from pytusd.stores.memory import MemoryStore
from tests.support.fake_azure import FakeAzure
from tests.support.fake_gcs import FakeGCS
from tests.support.inprocess import Server

_T = TypeVar("_T")

#: The requests that read an upload's state, by store.
READS = {"gcs": {"GetObject", "GetObjectMetadata", "ListObjects"}, "azure": {"download_blob", "get_block_list"}}


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def run_async(fn: Callable[[], Awaitable[_T]]) -> _T:
    return asyncio.run(asyncio.wait_for(fn(), 30))


# -- the helper -------------------------------------------------------------------------------


def test_a_kept_state_is_taken_once() -> None:
    async def main() -> None:
        handoff: Handoff[str] = Handoff()
        handoff.keep("a", "state")
        assert handoff.take("a") == "state"
        assert handoff.take("a") is None

    run_async(main)


def test_an_old_read_is_not_taken() -> None:
    async def main() -> None:
        handoff: Handoff[str] = Handoff(fresh_for=0.05)
        handoff.keep("a", "state")
        await asyncio.sleep(0.1)
        assert handoff.take("a") is None

    run_async(main)


def test_a_full_memory_keeps_no_older_read_of_the_upload() -> None:
    async def main() -> None:
        handoff: Handoff[str] = Handoff()
        handoff.keep("a", "before")
        for n in range(MAX_KEPT):
            handoff.keep(f"other{n}", "x")
        handoff.keep("a", "after")  # no room for it: the older read must not stand in either
        assert handoff.take("a") in (None, "after")

    run_async(main)


def test_a_forgotten_state_is_not_taken() -> None:
    async def main() -> None:
        handoff: Handoff[str] = Handoff()
        handoff.keep("a", "state")
        handoff.forget("a")
        assert handoff.take("a") is None

    run_async(main)


# -- the stores ---------------------------------------------------------------------------------


def make(kind: str, tmp_path: Path) -> tuple[DataStore, Any]:
    if kind == "gcs":
        gcs = FakeGCS()
        return GCSStore("b", client=gcs, object_prefix="p/", spool_dir=str(tmp_path / "spool")), gcs
    azure = FakeAzure()
    return AzureStore("c", azure, object_prefix="p", block_size=1000), azure


def another_instance(kind: str, fake: Any, tmp_path: Path) -> DataStore:
    """A second store on the same bucket: another server process."""
    if kind == "gcs":
        return GCSStore("b", client=fake, object_prefix="p/", spool_dir=str(tmp_path / "spool2"))
    return AzureStore("c", fake, object_prefix="p", block_size=1000)


def reads(kind: str, fake: Any) -> int:
    return sum(fake.calls[op] for op in READS[kind])


BOTH_STORES = pytest.mark.parametrize("kind", ["gcs", "azure"])


def on_store(kind: str, tmp_path: Path, scenario: Callable[[DataStore, Any], Awaitable[None]]) -> None:
    store, fake = make(kind, tmp_path)

    async def main() -> None:
        await store.start()
        try:
            await scenario(store, fake)
        finally:
            await store.close()

    run_async(main)


@BOTH_STORES
def test_a_patch_reads_its_upload_once(kind: str, tmp_path: Path) -> None:
    async def scenario(store: DataStore, fake: Any) -> None:
        await store.create(UploadInfo("u1", size=6000))
        offset = 0
        for piece in (b"a" * 2000, b"b" * 2000):  # whole Azure blocks: no small block to merge (a read)
            info = await store.get_info_to_write("u1")
            assert info.offset == offset
            before = reads(kind, fake)
            offset += await store.write_chunk("u1", offset, body(piece), length=len(piece))
            assert reads(kind, fake) == before, "the write read the upload again"
        assert (await store.get_info("u1")).offset == 4000
        got = b"".join([b async for b in store.read("u1")])
        assert got == b"a" * 2000 + b"b" * 2000

    on_store(kind, tmp_path, scenario)


@BOTH_STORES
def test_without_the_handlers_read_the_write_reads(kind: str, tmp_path: Path) -> None:
    async def scenario(store: DataStore, fake: Any) -> None:
        await store.create(UploadInfo("u1", size=6000))
        before = reads(kind, fake)
        assert await store.write_chunk("u1", 0, body(b"x" * 1500), length=1500) == 1500
        assert reads(kind, fake) > before

    on_store(kind, tmp_path, scenario)


@BOTH_STORES
def test_a_declared_length_in_between_is_seen_by_the_write(kind: str, tmp_path: Path) -> None:
    async def scenario(store: DataStore, fake: Any) -> None:
        await store.create(UploadInfo("u1", size=None))
        info = await store.get_info_to_write("u1")
        assert info.size is None
        await store.declare_length("u1", 1200)
        before = reads(kind, fake)
        assert await store.write_chunk("u1", 0, body(b"z" * 1200), length=1200) == 1200
        assert reads(kind, fake) > before, "the read from before the declaration was used"
        info = await store.get_info("u1")
        assert (info.size, info.offset) == (1200, 1200)

    on_store(kind, tmp_path, scenario)


@BOTH_STORES
def test_a_read_too_old_is_read_again(kind: str, tmp_path: Path) -> None:
    async def scenario(store: DataStore, fake: Any) -> None:
        store._handoff.fresh_for = 0.05  # type: ignore[attr-defined]
        await store.create(UploadInfo("u1", size=6000))
        await store.get_info_to_write("u1")
        await asyncio.sleep(0.1)
        before = reads(kind, fake)
        await store.write_chunk("u1", 0, body(b"q" * 100), length=100)
        assert reads(kind, fake) > before

    on_store(kind, tmp_path, scenario)


@BOTH_STORES
def test_a_write_at_another_offset_reads_and_is_refused(kind: str, tmp_path: Path) -> None:
    async def scenario(store: DataStore, fake: Any) -> None:
        await store.create(UploadInfo("u1", size=6000))
        await store.write_chunk("u1", 0, body(b"q" * 100), length=100)
        await store.get_info_to_write("u1")
        before = reads(kind, fake)
        with pytest.raises(StoreError):
            await store.write_chunk("u1", 0, body(b"r" * 100), length=100)
        assert reads(kind, fake) > before
        assert (await store.get_info("u1")).offset == 100

    on_store(kind, tmp_path, scenario)


@BOTH_STORES
def test_another_store_writing_in_between_is_seen(kind: str, tmp_path: Path) -> None:
    """A read kept from a request that did not write (a 409, say) is replaced by the next
    PATCH's own handler read, which sees what another instance wrote meanwhile."""

    async def scenario(store: DataStore, fake: Any) -> None:
        other = another_instance(kind, fake, tmp_path)
        await other.start()
        try:
            await store.create(UploadInfo("u1", size=6000))
            await store.get_info_to_write("u1")  # kept; no write follows here
            await other.write_chunk("u1", 0, body(b"o" * 700), length=700)
            info = await store.get_info_to_write("u1")  # the next PATCH's own read
            assert info.offset == 700
            assert await store.write_chunk("u1", 700, body(b"s" * 300), length=300) == 300
            got = b"".join([b async for b in store.read("u1")])
            assert got == b"o" * 700 + b"s" * 300
        finally:
            await other.close()

    on_store(kind, tmp_path, scenario)


@BOTH_STORES
def test_the_callers_info_is_its_own(kind: str, tmp_path: Path) -> None:
    """The handler may change the info it got (the service does); the write still goes by what
    the upload holds: its size (the write completes it) and its file name (the download's)."""

    async def scenario(store: DataStore, fake: Any) -> None:
        await store.create(UploadInfo("u1", size=3000, metadata={"filename": "a.bin"}))
        info = await store.get_info_to_write("u1")
        info.size = 5
        info.metadata["filename"] = "changed.txt"
        assert await store.write_chunk("u1", 0, body(b"m" * 3000), length=3000) == 3000
        stored = await store.get_info("u1")
        assert (stored.size, stored.offset, stored.metadata["filename"]) == (3000, 3000, "a.bin")
        if kind == "azure":
            blob = fake.blobs["p/u1"]
            assert "p/u1" in fake.completed
            assert "a.bin" in blob.content_disposition and "changed" not in blob.content_disposition

    on_store(kind, tmp_path, scenario)


@BOTH_STORES
def test_the_read_does_not_outlive_the_lock(kind: str, tmp_path: Path) -> None:
    """A request that read and did not write (a 409, say) released the lock; another instance
    wrote; then a write here that reads nothing first (a creation's) must not start from the
    read of before."""

    async def scenario(store: DataStore, fake: Any) -> None:
        other = another_instance(kind, fake, tmp_path)
        await other.start()
        try:
            await store.create(UploadInfo("u1", size=6000))
            await store.get_info_to_write("u1")
            store.forget_read_to_write("u1")  # the service, before it releases the lock
            await other.write_chunk("u1", 0, body(b"o" * 1000), length=1000)
            with pytest.raises(StoreError):
                await store.write_chunk("u1", 0, body(b"s" * 300), length=300)
            got = b"".join([b async for b in store.read("u1")])
            assert got == b"o" * 1000
        finally:
            await other.close()

    on_store(kind, tmp_path, scenario)


def test_an_azure_block_list_refused_falls_back_to_the_properties(tmp_path: Path) -> None:
    """The archive tier refuses Get Block List: the offset then comes from the blob's properties
    and nothing is kept, so the write reads (and fails or goes on) by itself."""

    async def scenario(store: DataStore, fake: Any) -> None:
        await store.create(UploadInfo("u1", size=6000))
        await store.write_chunk("u1", 0, body(b"a" * 2000), length=2000)
        fake.fail("get_block_list")
        info = await store.get_info_to_write("u1")
        assert info.offset == 2000
        before = fake.calls["get_block_list"]
        assert await store.write_chunk("u1", 2000, body(b"b" * 2000), length=2000) == 2000
        assert fake.calls["get_block_list"] == before + 1

    on_store("azure", tmp_path, scenario)


def test_the_service_forgets_the_read_before_it_releases_the_lock() -> None:
    events: list[str] = []

    class Watched(MemoryStore):
        async def get_info_to_write(self, upload_id: str, *, held_here_last: bool = False) -> UploadInfo:
            events.append("read")
            return await super().get_info_to_write(upload_id, held_here_last=held_here_last)

        def forget_read_to_write(self, upload_id: str) -> None:
            held = locker.is_held(upload_id)  # type: ignore[attr-defined]
            events.append(f"forget {upload_id} {'held' if held else 'released'}")

    class WatchedLocker(MemoryLocker):
        def is_held(self, upload_id: str) -> bool:
            return upload_id in self._held

    locker = WatchedLocker()

    async def main() -> None:
        srv = Server(Watched(), locker=locker)
        path = await srv.create(10)
        upload_id = path.rsplit("/", 1)[1]
        assert (await srv.patch(path, b"abc", 0)).status == 204
        assert (await srv.patch(path, b"abc", 0)).status == 409  # read, no write
        assert events == ["read", f"forget {upload_id} held"] * 2

    run_async(main)


def test_an_unavailable_azure_is_answered_as_such_not_asked_again(tmp_path: Path) -> None:
    async def scenario(store: DataStore, fake: Any) -> None:
        await store.create(UploadInfo("u1", size=6000))
        fake.fail("get_block_list", unavailable=True)
        before = dict(fake.calls)
        with pytest.raises(StoreUnavailable):
            await store.get_info_to_write("u1")
        asked = {op: n - before.get(op, 0) for op, n in fake.calls.items() if n != before.get(op, 0)}
        assert asked == {"download_blob": 1, "get_block_list": 1}

    on_store("azure", tmp_path, scenario)
