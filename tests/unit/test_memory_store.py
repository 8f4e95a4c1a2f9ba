"""The DataStore contract (pytusd.stores.base), run on MemoryStore and on FileStore alike.

MemoryStore exists for tests and examples; it must behave like the real store, or tests that use
it prove nothing. Everything here is plain asyncio, no server. FileStore-only behaviour (paths,
the ``.info`` JSON, IDs that try to escape, crash safety) is in ``test_file_store.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.base import DataStore, UploadExists, UploadNotFound
from pytusd.stores.file import FileStore
from pytusd.stores.memory import MemoryStore

Scenario = Callable[[DataStore], Awaitable[Any]]


class Boom(Exception):
    """A source that fails, like a body whose checksum does not match or whose client vanished."""


async def chunks(parts: Iterable[bytes], fail_after: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part
    if fail_after:
        raise Boom


async def content(store: DataStore, upload_id: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([block async for block in store.read(upload_id, start, end)])


@pytest.fixture(params=["memory", "file"])
def store_run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], Any]:
    """Runs a scenario on a fresh, started store of the parametrized kind."""

    def run(scenario: Scenario) -> Any:
        async def main() -> Any:
            store: DataStore = MemoryStore() if request.param == "memory" else FileStore(tmp_path / "uploads")
            await store.start()
            try:
                return await asyncio.wait_for(scenario(store), 30)
            finally:
                await store.close()

        return asyncio.run(main())

    return run


def new(upload_id: str = "up", size: int | None = 10, **fields: Any) -> UploadInfo:
    return UploadInfo(id=upload_id, size=size, created_at=1_700_000_000.5, **fields)


# -- create / get_info ---------------------------------------------------------------------------


def test_create_then_get_info(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        created = await store.create(new(metadata={"filename": "a.txt", "empty": ""}, is_partial=True))
        assert created.offset == 0
        info = await store.get_info("up")
        assert (info.id, info.size, info.offset) == ("up", 10, 0)
        assert info.metadata == {"filename": "a.txt", "empty": ""}
        assert info.is_partial and not info.is_final
        assert info.created_at == 1_700_000_000.5
        assert info.pending_finals == []

    store_run(scenario)


def test_deferred_length_and_declare_length(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new(size=None))
        info = await store.get_info("up")
        assert info.size is None and info.size_is_deferred
        await store.declare_length("up", 7)
        assert (await store.get_info("up")).size == 7

    store_run(scenario)


def test_create_twice_is_refused(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new())
        with pytest.raises(UploadExists):
            await store.create(new(size=99))
        assert (await store.get_info("up")).size == 10

    store_run(scenario)


def test_unknown_upload_is_not_found_everywhere(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        with pytest.raises(UploadNotFound):
            await store.get_info("nope")
        with pytest.raises(UploadNotFound):
            await store.write_chunk("nope", 0, chunks([b"x"]))
        with pytest.raises(UploadNotFound):
            await store.write_chunk("nope", 0, chunks([b"x"]), all_or_nothing=True)
        with pytest.raises(UploadNotFound):
            await store.update_info(new("nope"))
        with pytest.raises(UploadNotFound):
            await store.terminate("nope")
        with pytest.raises(UploadNotFound):
            await content(store, "nope")
        with pytest.raises(UploadNotFound):
            await store.last_write_time("nope")

    store_run(scenario)


def test_get_info_returns_a_snapshot(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new(metadata={"a": "1"}))
        info = await store.get_info("up")
        info.metadata["a"] = "changed"
        info.pending_finals.append("x")
        info.size = 1
        again = await store.get_info("up")
        assert (again.metadata, again.pending_finals, again.size) == ({"a": "1"}, [], 10)

    store_run(scenario)


# -- write_chunk -----------------------------------------------------------------------------------


def test_write_chunk_appends_and_offset_follows_the_data(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new(size=11))
        assert await store.write_chunk("up", 0, chunks([b"hel", b"lo"])) == 5
        assert (await store.get_info("up")).offset == 5
        assert await store.write_chunk("up", 5, chunks([])) == 0
        assert await store.write_chunk("up", 5, chunks([b" ", b"world"])) == 6
        info = await store.get_info("up")
        assert info.offset == 11 and info.is_complete
        assert await content(store, "up") == b"hello world"

    store_run(scenario)


def test_failing_source_keeps_what_it_yielded(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new())
        await store.write_chunk("up", 0, chunks([b"ab"]))
        with pytest.raises(Boom):
            await store.write_chunk("up", 2, chunks([b"cd", b"ef"], fail_after=True))
        assert (await store.get_info("up")).offset == 6
        assert await content(store, "up") == b"abcdef"

    store_run(scenario)


def test_all_or_nothing_discards_everything_when_the_source_fails(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
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

    store_run(scenario)


def test_many_chunks_in_one_write(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        parts = [bytes([i]) * (1000 + i) for i in range(200)]
        total = sum(map(len, parts))
        await store.create(new(size=total))
        assert await store.write_chunk("up", 0, chunks(parts)) == total
        assert await content(store, "up") == b"".join(parts)
        assert await content(store, "up", 995, 1005) == b"\x00" * 5 + b"\x01" * 5
        assert await content(store, "up", total - 3) == parts[-1][-3:]
        assert await content(store, "up", 5, 5) == b""

    store_run(scenario)


def test_last_write_time_moves_with_writes(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new())
        before = await store.last_write_time("up")
        await asyncio.sleep(0.05)
        await store.write_chunk("up", 0, chunks([b"x"]))
        assert await store.last_write_time("up") > before

    store_run(scenario)


# -- update_info -----------------------------------------------------------------------------------


def test_update_info_persists_fields_but_not_the_offset(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
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

    store_run(scenario)


# -- terminate, concatenate, list ------------------------------------------------------------------


def test_terminate_removes_the_upload(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new())
        await store.write_chunk("up", 0, chunks([b"abc"]))
        await store.terminate("up")
        with pytest.raises(UploadNotFound):
            await store.get_info("up")
        with pytest.raises(UploadNotFound):
            await store.terminate("up")
        assert [u async for u in store.list_uploads()] == []
        await store.create(new())  # the ID is free again
        assert (await store.get_info("up")).offset == 0

    store_run(scenario)


def test_concatenate_joins_partials_in_order(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
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
        for pid, data in parts.items():  # partials are untouched
            assert await content(store, pid) == data

    store_run(scenario)


def test_list_uploads_lists_every_upload_once(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        ids = {"a", "b", "user1/c", "user1/deep/d"}
        for uid in sorted(ids):
            await store.create(new(uid))
        listed = [u async for u in store.list_uploads()]
        assert sorted(listed) == sorted(ids)
        await store.terminate("b")
        assert sorted([u async for u in store.list_uploads()]) == sorted(ids - {"b"})

    store_run(scenario)


def test_ids_with_slashes_are_uploads_of_their_own(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        await store.create(new("user1/a", size=3))
        await store.create(new("user2/a", size=3))
        await store.write_chunk("user1/a", 0, chunks([b"one"]))
        await store.write_chunk("user2/a", 0, chunks([b"two"]))
        assert await content(store, "user1/a") == b"one"
        assert await content(store, "user2/a") == b"two"
        await store.terminate("user1/a")
        assert await content(store, "user2/a") == b"two"

    store_run(scenario)


# -- MemoryStore only ----------------------------------------------------------------------------


def test_memory_store_create_keeps_its_own_copy() -> None:
    async def main() -> None:
        store = MemoryStore()
        info = new(metadata={"a": "1"})
        await store.create(info)
        info.metadata["a"] = "changed by the caller"
        assert (await store.get_info("up")).metadata == {"a": "1"}

    asyncio.run(main())
