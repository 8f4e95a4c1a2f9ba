"""S3Store against a real OpenStack Swift (s3api): the storage contract, S3 by S3.

Every test uses its own key prefix in one bucket, so it can check exactly which objects exist.
Parts are 5 MiB (S3's minimum), so a few MiB of data exercise every path.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from tests.integration.s3_helpers import (
    BUCKET,
    MiB,
    bucket_keys,
    chunks_of,
    multipart_uploads,
    open_store,
    run,
    s3_env_fixture,  # noqa: F401 - fixture
    swift_fixture,  # noqa: F401 - fixture
    unique_prefix,
)
from tests.services.swift import SwiftS3Server

from pytusd.info import UploadInfo
from pytusd.stores.base import StoreError, UploadExists, UploadNotFound
from pytusd.stores.s3 import META_PARTS, S3Error, S3Store, UnfinishedPartsUnreadable
from pytusd.stores.s3 import parts as s3_parts

pytestmark = pytest.mark.services
#: S3 only (see tests/conftest.py): these tests start their own stores and servers on Swift.
STORES = ("s3",)


def data_of(size: int) -> bytes:
    return os.urandom(size)


async def read_all(store: S3Store, upload_id: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([block async for block in store.read(upload_id, start, end)])


async def new_upload(store: S3Store, size: int | None, upload_id: str = "up", **kwargs: Any) -> UploadInfo:
    return await store.create(UploadInfo(id=upload_id, size=size, created_at=time.time(), **kwargs))


async def offset(store: S3Store, upload_id: str = "up") -> int:
    return (await store.get_info(upload_id)).offset


# -- writing ----------------------------------------------------------------------------------------


def test_small_chunks_then_large_ones(s3_env: SwiftS3Server) -> None:
    """Chunks under 5 MiB wait in the incomplete part (in S3), then join the parts; byte-exact."""
    prefix = unique_prefix()
    data = data_of(17 * MiB + 321)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data))
            position = 0
            for size in (300 * 1024, 1 * MiB, 2 * MiB):  # 3.3 MiB: no part yet
                written = await store.write_chunk("up", position, chunks_of(data[position : position + size]))
                assert written == size
                position += size
                assert await offset(store) == position
            head = await store.client.head(store.part_key("up"))
            assert head is not None and head.size == position and head.metadata[META_PARTS] == "0"
            # 9 MiB more: the incomplete part plus new bytes become a 5 MiB part, the rest waits.
            await store.write_chunk("up", position, chunks_of(data[position : position + 9 * MiB]))
            position += 9 * MiB
            assert await offset(store) == position
            head = await store.client.head(store.part_key("up"))
            assert head is not None and head.metadata[META_PARTS] == "2"  # 5 + 5 MiB, 2.3 MiB waiting
            assert head.size == position - 10 * MiB
            await store.write_chunk("up", position, chunks_of(data[position:]))
            info = await store.get_info("up")
            assert info.offset == len(data) and info.is_complete
            assert await read_all(store, "up") == data

    run(scenario())
    # The finished object, its info, and the marker left in place of the incomplete part.
    assert bucket_keys(s3_env, prefix) == [prefix + "up", prefix + "up.info", prefix + "up.part"]
    assert multipart_uploads(s3_env, prefix) == []


def test_part_listing_pages(s3_env: SwiftS3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """ListParts answers at most 1,000 parts a page; the offset adds up every page."""
    prefix = unique_prefix()
    data = data_of(21 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            monkeypatch.setattr(store.client, "list_page", 2)
            await new_upload(store, len(data) + 1)
            await store.write_chunk("up", 0, chunks_of(data))  # 4 parts and 1 MiB waiting
            # This store remembers the part list of its own commit: no listing.
            assert await offset(store) == len(data)
            assert store.client.calls.get("list_parts", 0) == 0
        async with open_store(s3_env, prefix) as other:
            monkeypatch.setattr(other.client, "list_page", 2)
            assert await offset(other) == len(data)
            assert other.client.calls["list_parts"] == 2  # two pages, once: then it is remembered too
            assert await offset(other) == len(data)
            assert other.client.calls["list_parts"] == 2
            await other.write_chunk("up", len(data), chunks_of(b"!"))
            assert await read_all(other, "up") == data + b"!"

    run(scenario())


def test_offset_comes_from_s3_alone(s3_env: SwiftS3Server) -> None:
    """A second store (another process, or after a restart) sees the same upload and continues it."""
    prefix = unique_prefix()
    data = data_of(13 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as first:
            await new_upload(first, len(data), metadata={"filename": "a.bin"})
            await first.write_chunk("up", 0, chunks_of(data[: 7 * MiB + 5]))
        async with open_store(s3_env, prefix) as second:
            info = await second.get_info("up")
            assert info.offset == 7 * MiB + 5
            assert info.size == len(data) and info.metadata == {"filename": "a.bin"}
            # The incomplete part is not in this store's cache: it is read back from S3.
            await second.write_chunk("up", info.offset, chunks_of(data[info.offset :]))
            assert await read_all(second, "up") == data

    run(scenario())


def test_checksum_chunk_is_discarded_with_its_uploaded_parts(s3_env: SwiftS3Server) -> None:
    """all_or_nothing: parts uploaded while the chunk arrived never count if it fails."""
    prefix = unique_prefix()
    data = data_of(16 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data))
            await store.write_chunk("up", 0, chunks_of(data[: 2 * MiB]))
            calls = store.client.calls.get("upload_part", 0)
            with pytest.raises(ConnectionResetError):
                await store.write_chunk(
                    "up", 2 * MiB, chunks_of(data[2 * MiB :], fail_at=13 * MiB), all_or_nothing=True
                )
            assert store.client.calls["upload_part"] - calls >= 2  # parts did go up...
            assert await offset(store) == 2 * MiB  # ...but do not count
            head = await store.client.head(store.part_key("up"))
            assert head is not None and head.size == 2 * MiB and head.metadata[META_PARTS] == "0"
            # Later writes reuse the part numbers; the stale parts never reach the object.
            await store.write_chunk("up", 2 * MiB, chunks_of(data[2 * MiB : 6 * MiB]), all_or_nothing=True)
            await store.write_chunk("up", 6 * MiB, chunks_of(data[6 * MiB :]))
            assert await read_all(store, "up") == data

    run(scenario())


def test_bytes_before_a_broken_body_are_kept(s3_env: SwiftS3Server) -> None:
    prefix = unique_prefix()
    data = data_of(12 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data))
            with pytest.raises(ConnectionResetError):
                await store.write_chunk("up", 0, chunks_of(data, fail_at=7 * MiB + 64 * 1024))
            kept = await offset(store)
            assert kept == 7 * MiB + 64 * 1024
            await store.write_chunk("up", kept, chunks_of(data[kept:]))
            assert await read_all(store, "up") == data

    run(scenario())


def test_s3_failure_mid_write_leaves_the_offset(s3_env: SwiftS3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """An S3 error while parts go up fails the write; nothing of it counts; the next one works."""
    prefix = unique_prefix()
    data = data_of(18 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data))
            await store.write_chunk("up", 0, chunks_of(data[: 1 * MiB]))
            real = store.client.upload_part
            calls = 0

            async def flaky(*args: Any, **kwargs: Any) -> str:
                nonlocal calls
                calls += 1
                if calls == 2:
                    raise S3Error("upload_part", "InternalError", 500, "injected")
                return await real(*args, **kwargs)

            monkeypatch.setattr(store.client, "upload_part", flaky)
            with pytest.raises(StoreError):
                await store.write_chunk("up", 1 * MiB, chunks_of(data[1 * MiB :]))
            assert await offset(store) == 1 * MiB
            monkeypatch.setattr(store.client, "upload_part", real)
            await store.write_chunk("up", 1 * MiB, chunks_of(data[1 * MiB :]))
            assert await read_all(store, "up") == data
            assert not os.listdir(store._temp_dir)  # no spool left behind

    run(scenario())


@pytest.mark.parametrize("all_or_nothing", [False, True])
def test_write_cut_off_in_the_middle(s3_env: SwiftS3Server, all_or_nothing: bool) -> None:
    """A body that stops sending: what arrived is committed while the request still waits (parts
    as they finish, the rest once the body pauses), so HEAD sees it and a crash keeps it, as on a
    disk; a checksum chunk keeps nothing. The offset never goes backwards meanwhile."""
    prefix = unique_prefix()
    data = data_of(14 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data))
            await store.write_chunk("up", 0, chunks_of(data[: 3 * MiB]))
            gate = asyncio.Event()

            async def stalls() -> Any:
                async for block in chunks_of(data[3 * MiB : 12 * MiB]):
                    yield block
                await gate.wait()

            write = store.write_chunk("up", 3 * MiB, stalls(), all_or_nothing=all_or_nothing)
            task = asyncio.get_running_loop().create_task(write)
            # 3 MiB waiting + 9 MiB = two 5 MiB parts, then 2 MiB spooled for the next part.
            expected = 3 * MiB if all_or_nothing else 12 * MiB
            seen = [await offset(store)]
            deadline = time.monotonic() + 10
            while seen[-1] != expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                seen.append(await offset(store))
            await asyncio.sleep(0.8)
            assert await offset(store) == expected
            assert seen == sorted(seen)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await offset(store) == expected
            await store.write_chunk("up", expected, chunks_of(data[expected:]))
            assert await read_all(store, "up") == data

    run(scenario())


@pytest.mark.parametrize("length_known", [False, True], ids=["unknown-length", "known-length"])
def test_parts_in_flight_are_bounded(
    s3_env: SwiftS3Server, monkeypatch: pytest.MonkeyPatch, length_known: bool
) -> None:
    """Never more than max_concurrent_parts uploads at a time, nor more than max_buffered_parts
    spool files waiting on disk (plus the one filling), whether parts stream or wait to be full."""
    prefix = unique_prefix()
    data = data_of(31 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix, max_concurrent_parts=2, max_buffered_parts=3) as store:
            await new_upload(store, len(data))
            real = store.client.upload_part
            active = peak = spools = 0

            async def counted(*args: Any, **kwargs: Any) -> str:
                nonlocal active, peak, spools
                active += 1
                peak = max(peak, active)
                spools = max(spools, len(os.listdir(store._temp_dir)))
                try:
                    await asyncio.sleep(0.05)
                    return await real(*args, **kwargs)
                finally:
                    active -= 1

            monkeypatch.setattr(store.client, "upload_part", counted)
            length = len(data) if length_known else None
            await store.write_chunk("up", 0, chunks_of(data, 256 * 1024), length=length)
            assert peak == 2
            assert spools <= 4  # three buffered (two of them in flight), one filling
            assert os.listdir(store._temp_dir) == []
            assert await read_all(store, "up") == data

    run(scenario())


def test_part_size_grows_to_respect_the_part_limit(s3_env: SwiftS3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for only 3 parts, 20 MiB go up as parts of ceil(20/3) MiB, not 4 of 5 MiB."""
    monkeypatch.setattr(s3_parts, "MAX_PARTS", 3)
    prefix = unique_prefix()
    data = data_of(20 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data))
            sizes: list[int] = []
            real = store.client.upload_part

            async def record(key: str, upload_id: str, number: int, body: Any, size: int, md5: str) -> str:
                sizes.append(size)
                return await real(key, upload_id, number, body, size, md5)

            monkeypatch.setattr(store.client, "upload_part", record)
            await store.write_chunk("up", 0, chunks_of(data))
            assert len(sizes) == 3 and max(sizes) == -(-len(data) // 3)
            assert await read_all(store, "up") == data

    run(scenario())


# -- lengths ----------------------------------------------------------------------------------------


def test_zero_byte_uploads(s3_env: SwiftS3Server) -> None:
    prefix = unique_prefix()

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            info = await new_upload(store, 0, "zero")
            assert info.offset == 0
            assert (await store.get_info("zero")).is_complete
            assert await read_all(store, "zero") == b""
            assert await store.write_chunk("zero", 0, chunks_of(b"")) == 0
            # Deferred, then declared 0: the multipart upload is dropped for an empty object.
            await new_upload(store, None, "later")
            await store.write_chunk("later", 0, chunks_of(b""))
            await store.declare_length("later", 0)
            assert (await store.get_info("later")).is_complete
            assert await read_all(store, "later") == b""

    run(scenario())
    names = ("later", "later.info", "later.part", "zero", "zero.info")
    assert bucket_keys(s3_env, prefix) == [prefix + n for n in names]
    assert multipart_uploads(s3_env, prefix) == []


def test_finished_objects_carry_type_and_disposition(s3_env: SwiftS3Server) -> None:
    """Set at CreateMultipartUpload (and on the empty object of a 0-byte upload): S3 keeps them."""
    prefix = unique_prefix()
    metadata = {"filetype": "image/png", "filename": "résumé.png"}
    disposition = "inline; filename=\"r_sum_.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9.png"

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, 3, "small", metadata=metadata)
            await store.write_chunk("small", 0, chunks_of(b"abc"))
            await new_upload(store, 0, "empty", metadata=metadata)

    run(scenario())
    client = s3_env.client()
    try:
        for name in ("small", "empty"):
            head = client.head_object(Bucket=BUCKET, Key=prefix + name)
            assert (head["ContentType"], head["ContentDisposition"]) == ("image/png", disposition)
    finally:
        client.close()


def test_deferred_length(s3_env: SwiftS3Server) -> None:
    prefix = unique_prefix()
    data = data_of(11 * MiB + 77)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            # Declared before the last chunk, as tus clients do.
            await new_upload(store, None, "a")
            await store.write_chunk("a", 0, chunks_of(data[: 6 * MiB]))
            assert (await store.get_info("a")).size is None
            await store.declare_length("a", len(data))
            await store.write_chunk("a", 6 * MiB, chunks_of(data[6 * MiB :]))
            assert await read_all(store, "a") == data
            # Declared after every byte arrived (IETF drafts): the incomplete part is copied inside
            # S3 as the last part.
            await new_upload(store, None, "b")
            await store.write_chunk("b", 0, chunks_of(data))
            before = store.client.calls.get("upload_part", 0)
            await store.declare_length("b", len(data))
            assert store.client.calls.get("upload_part", 0) == before
            info = await store.get_info("b")
            assert info.is_complete
            assert await read_all(store, "b") == data

    run(scenario())


# -- reading ----------------------------------------------------------------------------------------


def test_ranges_are_forwarded(s3_env: SwiftS3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = unique_prefix()
    data = data_of(6 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data))
            await store.write_chunk("up", 0, chunks_of(data))
            asked: list[tuple[int, int | None]] = []
            real = store.client.open_range

            async def record(key: str, start: int = 0, end: int | None = None) -> Any:
                asked.append((start, end))
                return await real(key, start, end)

            monkeypatch.setattr(store.client, "open_range", record)
            assert await read_all(store, "up", 5 * MiB - 3, 5 * MiB + 4) == data[5 * MiB - 3 : 5 * MiB + 4]
            assert await read_all(store, "up", 100) == data[100:]
            assert asked == [(5 * MiB - 3, 5 * MiB + 4), (100, None)]

    run(scenario())


def test_reading_an_unfinished_upload(s3_env: SwiftS3Server) -> None:
    """Bytes in the incomplete part can be read before the upload is complete (the IETF draft
    hashes them for Repr-Digest); bytes in parts of an unfinished multipart upload cannot."""
    prefix = unique_prefix()
    data = data_of(7 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, None)
            await store.write_chunk("up", 0, chunks_of(data[:3000]))
            assert await read_all(store, "up", 0, 3000) == data[:3000]
            assert await read_all(store, "up", 100) == data[100:3000]
            await store.write_chunk("up", 3000, chunks_of(data[3000:]))  # a part and 2 MiB
            assert await read_all(store, "up", 5 * MiB + 1, 6 * MiB) == data[5 * MiB + 1 : 6 * MiB]
            assert await read_all(store, "up", 7 * MiB) == b""
            with pytest.raises(UnfinishedPartsUnreadable):
                await read_all(store, "up", 0, 3000)

    run(scenario())


# -- concatenation ----------------------------------------------------------------------------------


def test_concatenation_of_three_partials_is_copied_inside_s3(
    s3_env: SwiftS3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = unique_prefix()
    pieces = [data_of(6 * MiB), data_of(5 * MiB + 1), data_of(1000)]

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            for n, piece in enumerate(pieces):
                await new_upload(store, len(piece), f"p{n}", is_partial=True)
                await store.write_chunk(f"p{n}", 0, chunks_of(piece))
            final = await new_upload(store, None, "final", is_final=True, partial_uploads=["p0", "p1", "p2"])
            partials = [await store.get_info(f"p{n}") for n in range(3)]
            downloads: list[str] = []
            real = store.client.open_range

            async def record(key: str, start: int = 0, end: int | None = None) -> Any:
                downloads.append(key)
                return await real(key, start, end)

            monkeypatch.setattr(store.client, "open_range", record)
            copies = store.client.calls.get("upload_part_copy", 0)
            await store.concatenate(final, partials)
            assert downloads == []  # not one byte came through pytusd
            assert store.client.calls["upload_part_copy"] - copies == 3
            info = await store.get_info("final")
            assert info.offset == sum(map(len, pieces))
            monkeypatch.setattr(store.client, "open_range", real)
            assert await read_all(store, "final") == b"".join(pieces)
            # The partials stay as they were.
            assert await read_all(store, "p1") == pieces[1]

    run(scenario())


def test_concatenation_of_small_partials(s3_env: SwiftS3Server) -> None:
    """Partials under 5 MiB cannot be copy parts (except the last): they are assembled."""
    prefix = unique_prefix()
    pieces = [data_of(1000), data_of(6 * MiB), data_of(2 * MiB), b"", data_of(3)]

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            for n, piece in enumerate(pieces):
                await new_upload(store, len(piece), f"p{n}", is_partial=True)
                await store.write_chunk(f"p{n}", 0, chunks_of(piece))
            ids = [f"p{n}" for n in range(len(pieces))]
            final = await new_upload(store, None, "final", is_final=True, partial_uploads=ids)
            await store.concatenate(final, [await store.get_info(i) for i in ids])
            assert await read_all(store, "final") == b"".join(pieces)
            # Every partial empty: an empty object.
            await new_upload(store, 0, "e1", is_partial=True)
            empty = await new_upload(store, None, "efinal", is_final=True, partial_uploads=["e1"])
            await store.concatenate(empty, [await store.get_info("e1")])
            assert (await store.get_info("efinal")).offset == 0
            assert await read_all(store, "efinal") == b""

    run(scenario())


def test_concatenation_finishes_a_partial_that_holds_all_its_bytes(s3_env: SwiftS3Server) -> None:
    prefix = unique_prefix()

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, None, "p", is_partial=True)
            await store.write_chunk("p", 0, chunks_of(b"abc"))
            # Length stored, completion lost (a crash in declare_length).
            info = await store.get_info("p")
            info.size = 3
            await store.update_info(info)
            final = await new_upload(store, None, "f", is_final=True, partial_uploads=["p"])
            await store.concatenate(final, [await store.get_info("p")])
            assert await read_all(store, "f") == b"abc"
            assert await read_all(store, "p") == b"abc"

    run(scenario())


# -- everything else --------------------------------------------------------------------------------


def test_termination_removes_every_object(s3_env: SwiftS3Server) -> None:
    prefix = unique_prefix()
    data = data_of(8 * MiB)

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            await new_upload(store, len(data), "open")
            await store.write_chunk("open", 0, chunks_of(data[: 7 * MiB]))  # a part and a tail
            await new_upload(store, 5, "done")
            await store.write_chunk("done", 0, chunks_of(b"12345"))
            await new_upload(store, 0, "empty")
            assert multipart_uploads(s3_env, prefix) == [prefix + "open"]
            for upload_id in ("open", "done", "empty"):
                await store.terminate(upload_id)
                with pytest.raises(UploadNotFound):
                    await store.get_info(upload_id)
                with pytest.raises(UploadNotFound):
                    await store.terminate(upload_id)

    run(scenario())
    assert bucket_keys(s3_env, prefix) == []
    assert multipart_uploads(s3_env, prefix) == []


def test_ids_listing_and_last_write(s3_env: SwiftS3Server) -> None:
    prefix = unique_prefix()

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            created = time.time() - 100
            await store.create(UploadInfo(id="a", size=10, created_at=created))
            await store.create(UploadInfo(id="dir/b", size=10, created_at=created))
            assert sorted([u async for u in store.list_uploads()]) == ["a", "dir/b"]
            assert await store.last_write_time("a") == created
            before = time.time()
            await store.write_chunk("a", 0, chunks_of(b"12345"))
            assert before <= await store.last_write_time("a") <= time.time()
            with pytest.raises(UploadExists):
                await store.create(UploadInfo(id="a", size=1))
            with pytest.raises(UploadNotFound):
                await store.get_info("missing")
            for reserved in ("x.info", "x.part", "x.finals/y", "a.info/b"):
                with pytest.raises(UploadNotFound):
                    await store.create(UploadInfo(id=reserved, size=1))

    run(scenario())


def test_update_info_keeps_the_storage_keys(s3_env: SwiftS3Server) -> None:
    prefix = unique_prefix()

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            info = await new_upload(store, 10, "u", is_partial=True)
            stored = dict(info.storage)
            info.metadata = {"k": "v"}
            info.pending_finals = ["f"]
            info.storage = {"Hook": "x"}
            await store.update_info(info)
            again = await store.get_info("u")
            assert again.metadata == {"k": "v"} and again.pending_finals == ["f"]
            assert again.storage == {**stored, "Hook": "x"}
            await store.add_pending_final("u", "g")
            await store.add_pending_final("u", "g")
            assert (await store.get_info("u")).pending_finals == ["f", "g"]
            with pytest.raises(UploadNotFound):
                await store.update_info(UploadInfo(id="nope", size=1))

    run(scenario())


def test_pending_finals_never_undo_a_declared_length(s3_env: SwiftS3Server) -> None:
    """add_pending_final runs without the partial's lock, beside a PATCH declaring its length:
    neither may undo the other (S3 has no atomic append: each final is an object of its own)."""
    prefix = unique_prefix()

    async def scenario() -> None:
        async with open_store(s3_env, prefix) as store:
            for n in range(8):
                await new_upload(store, None, f"p{n}", is_partial=True)
                await asyncio.gather(store.declare_length(f"p{n}", 4), store.add_pending_final(f"p{n}", f"f{n}"))
                info = await store.get_info(f"p{n}")
                assert (info.size, info.pending_finals) == (4, [f"f{n}"])
            await store.terminate("p0")
            with pytest.raises(UploadNotFound):
                await store.add_pending_final("p0", "f")

    run(scenario())
    assert not [k for k in bucket_keys(s3_env, prefix) if k.startswith(prefix + "p0")]


def test_bucket_must_exist(s3_env: SwiftS3Server) -> None:
    async def scenario() -> None:
        store = S3Store("no-such-bucket-here", endpoint_url=s3_env.endpoint_url)
        with pytest.raises(StoreError, match="no-such-bucket-here"):
            await store.start()

    run(scenario())
