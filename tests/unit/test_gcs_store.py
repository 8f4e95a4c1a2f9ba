"""The GCS store beyond the contract, on the in-memory bucket (tests/support/fake_gcs.py).

Here are the cases the emulator cannot exercise (it ignores ``ifGenerationMatch`` and composes any
number of sources) and the crash windows of docs/gcs.md, made by hand: objects left as a process
killed at that point would leave them, then a fresh store (as after a restart) reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.base import StoreError, StoreUnavailable, UploadNotFound
from pytusd.stores.gcs import GCSStore
from pytusd.stores.gcs.flags import store_from_settings
from pytusd.stores.gcs.spool import open_spool_dir
from tests.support.fake_gcs import FakeGCS

Scenario = Callable[[GCSStore, FakeGCS, Path], Awaitable[None]]


def run(scenario: Scenario, tmp_path: Path, bucket: FakeGCS | None = None, **kwargs: Any) -> None:
    fake = bucket or FakeGCS()

    async def main() -> None:
        store = GCSStore("b", client=fake, object_prefix="p/", spool_dir=str(tmp_path / "spool"), **kwargs)
        await store.start()
        try:
            await asyncio.wait_for(scenario(store, fake, tmp_path), 30)
        finally:
            await store.close()

    asyncio.run(main())


def restarted(fake: FakeGCS, tmp_path: Path) -> GCSStore:
    """Another store on the same bucket (a restarted server, or another instance)."""
    return GCSStore("b", client=fake, object_prefix="p/", spool_dir=str(tmp_path / "spool2"))


async def body(*parts: bytes, fail: bool = False, pause: float = 0) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(pause)
        yield part
    if fail:
        raise ConnectionResetError("client went away")


async def content(store: GCSStore, upload_id: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([b async for b in store.read(upload_id, start, end)])


def new(upload_id: str = "up", size: int | None = 100, **fields: Any) -> UploadInfo:
    return UploadInfo(id=upload_id, size=size, created_at=1.0, **fields)


def names(fake: FakeGCS, prefix: str = "p/") -> list[str]:
    return sorted(n for n in fake.objects if n.startswith(prefix))


def spool_files(tmp_path: Path) -> list[str]:
    return [f for _, _, files in os.walk(tmp_path / "spool") for f in files]


def test_layout_is_data_info_and_nothing_else_once_complete(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        created = await store.create(new(size=10, metadata={"filetype": "text/plain"}))
        assert created.storage == {"Type": "gcsstore", "Bucket": "b", "Key": "p/up"}
        assert names(fake) == ["p/up.info"]  # no data object before the first byte
        await store.write_chunk("up", 0, body(b"hello"))
        # Incomplete: the chunk counts as it is; composing now would only copy bytes again.
        assert names(fake) == ["p/up.info", "p/up.part/0000000000000000"]
        await store.write_chunk("up", 5, body(b"world"))
        assert names(fake) == ["p/up", "p/up.info"]
        assert fake.objects["p/up"].content_type == "text/plain"
        assert await content(store, "up") == b"helloworld"
        assert spool_files(tmp) == []

    run(scenario, tmp_path)


def test_declaring_a_length_already_reached_composes(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new(size=None))
        await store.write_chunk("up", 0, body(b"abc"))
        await store.write_chunk("up", 3, body(b"def"))
        assert len([n for n in names(fake) if ".part/" in n]) == 2
        await store.declare_length("up", 6)
        assert names(fake) == ["p/up", "p/up.info"]
        assert (await store.get_info("up")).offset == 6

    run(scenario, tmp_path)


def test_a_chunk_counts_before_it_is_composed(tmp_path: Path) -> None:
    """Crash window: chunks uploaded, compose not done (an incomplete upload composes only once 31
    chunks wait)."""

    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new(size=7))
        await store.write_chunk("up", 0, body(b"abc"))
        assert await store.write_chunk("up", 3, body(b"def")) == 3  # acknowledged: the chunk is stored
        assert "p/up.part/0000000000000003" in fake.objects
        other = restarted(fake, tmp)
        await other.start()
        try:
            assert (await other.get_info("up")).offset == 6
            assert await content(other, "up") == b"abcdef"
            assert await content(other, "up", 2, 5) == b"cde"  # across two chunks
            await other.write_chunk("up", 6, body(b"g"))  # the write that completes it composes all
        finally:
            await other.close()
        assert names(fake) == ["p/up", "p/up.info"]
        assert fake.objects["p/up"].data == b"abcdefg"

    run(scenario, tmp_path)


def test_a_composed_chunk_left_behind_is_not_counted_twice(tmp_path: Path) -> None:
    """Crash window: compose done, the chunk not deleted yet."""

    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        from pytusd.stores.gcs.compose import compact

        await store.create(new(size=7))
        await store.write_chunk("up", 0, body(b"abc"))
        await store.write_chunk("up", 3, body(b"def"))
        fake.fail("DeleteObject", 503)
        with contextlib.suppress(StoreError):
            await compact(fake, store.names, await store._state("up"), "application/octet-stream")
        assert fake.objects["p/up"].data == b"abcdef"
        assert [n for n in fake.objects if ".part/" in n]  # a composed chunk left behind
        assert (await store.get_info("up")).offset == 6
        assert await content(store, "up") == b"abcdef"
        await store.write_chunk("up", 6, body(b"g"))
        assert names(fake) == ["p/up", "p/up.info"]
        assert await content(store, "up") == b"abcdefg"

    run(scenario, tmp_path)


def test_a_chunk_at_an_offset_taken_is_refused(tmp_path: Path) -> None:
    """ifGenerationMatch=0 (the emulator ignores it): a second writer never replaces a chunk."""

    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new())
        fake.fail("ComposeObject", 503)
        await store.write_chunk("up", 0, body(b"abc"))
        state = await store._state("up")  # as another instance read it
        state.chunks.clear()
        from pytusd.stores.gcs.writer import ChunkWriter

        writer = ChunkWriter(fake, store.names, state, store._new_spool, progressive=False, commit_size=1 << 20)
        writer.feed(b"XYZ")
        with pytest.raises(StoreError, match="another writer"):
            await writer.commit()
        await writer.close()
        assert await content(store, "up") == b"abc"

    run(scenario, tmp_path)


def test_compose_into_a_changed_data_object_is_deferred(tmp_path: Path) -> None:
    """ifGenerationMatch on compose: another compose in between makes this one fail, not overwrite."""

    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        from pytusd.stores.gcs.compose import compact

        await store.create(new())
        await store.write_chunk("up", 0, body(b"abc"))
        await compact(fake, store.names, await store._state("up"), "application/octet-stream")
        await store.write_chunk("up", 3, body(b"def"))  # incomplete: stays a chunk
        state = await store._state("up")
        assert len(state.chunks) == 1
        fake.objects["p/up"].generation += 1000  # someone wrote the data object since

        with pytest.raises(StoreError, match="412"):
            await compact(fake, store.names, state, "application/octet-stream")
        assert fake.objects["p/up"].data == b"abc"

    run(scenario, tmp_path)


def test_more_than_31_chunks_are_composed_in_steps(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new(size=None))
        await store.write_chunk("up", 0, body(b"0"))  # incomplete: leaves its chunk
        for i in range(1, 70):  # 69 more chunks, as if every compose had failed
            fake.objects[f"p/up.part/{i:016d}"] = fake.objects["p/up.part/0000000000000000"].__class__(
                str(i % 10).encode(), 10_000 + i, 1.0, "application/octet-stream"
            )
        assert (await store.get_info("up")).offset == 70
        await store.write_chunk("up", 70, body(b"!"))
        expected = "".join(str(i % 10) for i in range(70)).encode() + b"!"
        assert fake.objects["p/up"].data == expected
        assert names(fake) == ["p/up", "p/up.info"]
        assert fake.calls["ComposeObject"] == 3  # 31 + 31 + 9 chunks

    run(scenario, tmp_path)


def test_concatenating_more_than_32_partials(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        ids = [f"p{i}" for i in range(70)]
        for i, pid in enumerate(ids):
            data = f"<{i}>".encode()
            await store.create(new(pid, size=len(data), is_partial=True))
            await store.write_chunk(pid, 0, body(data))
        final = await store.create(new("final", size=None, is_final=True, partial_uploads=ids))
        await store.concatenate(final, [await store.get_info(pid) for pid in ids])
        assert await content(store, "final") == b"".join(f"<{i}>".encode() for i in range(70))
        assert not [n for n in fake.objects if "compose-" in n]  # intermediates deleted

    run(scenario, tmp_path)


def test_a_concatenation_cut_short_leaves_the_final_empty(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        ids = [f"p{i}" for i in range(40)]
        for pid in ids:
            await store.create(new(pid, size=1, is_partial=True))
            await store.write_chunk(pid, 0, body(b"x"))
        final = await store.create(new("final", size=None, is_final=True, partial_uploads=ids))
        partials = [await store.get_info(pid) for pid in ids]
        calls = fake.calls["ComposeObject"]
        fake.fail("ComposeObject", 503)
        with pytest.raises(StoreUnavailable):
            await store.concatenate(final, partials)
        assert fake.calls["ComposeObject"] == calls + 1
        assert (await store.get_info("final")).offset == 0
        await store.concatenate(final, partials)
        assert await content(store, "final") == b"x" * 40

    run(scenario, tmp_path)


def test_a_failing_body_keeps_what_arrived_and_removes_its_spool(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new())
        with pytest.raises(ConnectionResetError):
            await store.write_chunk("up", 0, body(b"ab", b"cd", fail=True))
        assert await content(store, "up") == b"abcd"
        with pytest.raises(ConnectionResetError):
            await store.write_chunk("up", 4, body(b"ef", fail=True), all_or_nothing=True)
        assert (await store.get_info("up")).offset == 4
        assert [n for n in fake.objects if ".part/" in n] == ["p/up.part/0000000000000000"]  # the first write's
        assert spool_files(tmp) == []

    run(scenario, tmp_path)


def test_a_slow_body_is_committed_while_it_arrives(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new(size=None))
        seen: list[int] = []

        async def watch() -> None:
            while True:
                seen.append((await store.get_info("up")).offset)
                await asyncio.sleep(0.05)

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            assert await store.write_chunk("up", 0, body(*[b"x" * 10] * 8, pause=0.15)) == 80
        finally:
            watcher.cancel()
        assert len({s for s in seen if 0 < s < 80}) >= 2  # progress visible before the end
        assert await content(store, "up") == b"x" * 80

    run(scenario, tmp_path)


def test_a_failed_commit_while_arriving_is_retried_in_order(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new(size=None))
        fake.fail("PutObject", 503)  # the first background commit fails
        parts = [bytes([65 + i]) * 5 for i in range(6)]
        assert await store.write_chunk("up", 0, body(*parts, pause=0.12)) == 30
        assert await content(store, "up") == b"".join(parts)

    run(scenario, tmp_path)


def test_an_unreachable_bucket_is_unavailable_and_nothing_is_lost(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new())
        await store.write_chunk("up", 0, body(b"abc"))
        fake.fail("PutObject", None)
        with pytest.raises(StoreUnavailable):
            await store.write_chunk("up", 3, body(b"def"))
        assert await content(store, "up") == b"abc"
        fake.fail("ListObjects", 503)
        with pytest.raises(StoreUnavailable):
            await store.get_info("up")

    run(scenario, tmp_path)


def test_leftovers_of_a_terminated_upload_do_not_count_for_a_new_one(tmp_path: Path) -> None:
    """Crash window: terminate deleted the info object, then died."""

    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        await store.create(new())
        fake.fail("ComposeObject", 503)
        await store.write_chunk("up", 0, body(b"old"))
        del fake.objects["p/up.info"]
        with pytest.raises(UploadNotFound):
            await store.get_info("up")
        await store.create(new())
        assert (await store.get_info("up")).offset == 0
        assert names(fake) == ["p/up.info"]

    run(scenario, tmp_path)


def test_ids_sharing_a_prefix_do_not_see_each_others_objects(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        for uid in ("a", "a.b", "ab"):
            await store.create(new(uid, is_partial=True))
        fake.fail("ComposeObject", 503)
        await store.write_chunk("a.b", 0, body(b"xyz"))
        await store.add_pending_final("a.b", "f")
        info = await store.get_info("a")
        assert (info.offset, info.pending_finals) == (0, [])
        assert (await store.get_info("a.b")).offset == 3
        await store.terminate("a")
        assert (await store.get_info("a.b")).pending_finals == ["f"]
        assert sorted([u async for u in store.list_uploads()]) == ["a.b", "ab"]

    run(scenario, tmp_path)


def test_a_dead_process_spool_directory_is_removed(tmp_path: Path) -> None:
    parent = tmp_path / "spool"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = parent / f"spool-{dead.stdout.strip()}-x"
    stale.mkdir(parents=True)
    (stale / "a.spool").write_bytes(b"unacknowledged")
    mine = open_spool_dir(str(parent))
    assert not stale.exists()
    assert os.path.isdir(mine)


def test_flags_build_the_store(tmp_path: Path) -> None:
    assert store_from_settings({"gcs_bucket": ""}) is None
    store = store_from_settings({"gcs_bucket": "b", "gcs_object_prefix": "x", "upload_dir": str(tmp_path)})
    assert isinstance(store, GCSStore) and store.object_prefix == "x/"
    with pytest.raises(ValueError, match="http"):
        store_from_settings({"gcs_bucket": "b", "gcs_endpoint": "localhost:1"})


def test_ids_with_a_semicolon_are_not_stored(tmp_path: Path) -> None:
    async def scenario(store: GCSStore, fake: FakeGCS, tmp: Path) -> None:
        from pytusd.stores.base import InvalidStorage

        await store.create(new("a"))
        with pytest.raises(UploadNotFound):
            await store.get_info("a;x")
        with pytest.raises(InvalidStorage):
            await store.create(new("b;x"))

    run(scenario, tmp_path)
