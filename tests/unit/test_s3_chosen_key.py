"""A pre-create hook's Storage.Key on the S3 store: the data lives at the chosen key (below the
object prefix), the .info stays at the ID, and nothing ever lands outside the prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.base import InvalidStorage, UploadExists, UploadNotFound
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.layout import KeyLayout
from tests.support.fake_s3 import FakeS3

MiB = 1024 * 1024
PART = 5 * MiB
DATA = os.urandom(2 * PART + 12345)
PREFIX = "pre/"
CHOSEN = "by-owner/report.bin"


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(scenario(), 60)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def opened(fake: FakeS3, tmp_path: Path) -> AsyncIterator[S3Store]:
    store = S3Store(
        "bucket", client=fake, object_prefix=PREFIX, part_size=PART, max_concurrent_parts=4, temp_dir=str(tmp_path)
    )
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def body(data: bytes, step: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), step):
        await asyncio.sleep(0)
        yield data[start : start + step]


async def read_all(store: S3Store, upload_id: str) -> bytes:
    return b"".join([block async for block in store.read(upload_id)])


async def write(store: S3Store, upload_id: str, data: bytes, offset: int = 0) -> int:
    """A PATCH: the handler reads the upload, then writes."""
    info = await store.get_info(upload_id)
    assert info.offset == offset
    return await store.write_chunk(upload_id, offset, body(data))


def test_data_goes_to_the_chosen_key_and_survives_a_restart(tmp_path: Path) -> None:
    fake = FakeS3()
    pieces = [DATA[: PART - 7], DATA[PART - 7 : 2 * PART + 3], DATA[2 * PART + 3 :]]

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            info = await store.create(UploadInfo(id="up", size=len(DATA), storage={"Key": CHOSEN}))
            assert info.storage["Key"] == PREFIX + CHOSEN
            assert info.storage["InfoKey"] == PREFIX + "up.info" and info.storage["Bucket"] == "bucket"
            assert fake.upload_of(PREFIX + CHOSEN)
            offset = await write(store, "up", pieces[0])
        # A restart in the middle: the offset comes back from S3 alone.
        async with opened(fake, tmp_path) as store:
            assert (await store.get_info("up")).offset == offset
            offset += await write(store, "up", pieces[1], offset)
            offset += await write(store, "up", pieces[2], offset)
            assert offset == len(DATA)
            assert fake.data(PREFIX + CHOSEN) == DATA
            assert PREFIX + "up" not in fake.objects and not fake.uploads
            assert await read_all(store, "up") == DATA
        async with opened(fake, tmp_path) as store:
            assert (await store.get_info("up")).offset == len(DATA)
            assert await read_all(store, "up") == DATA  # no fresh state: the info names the key
        assert all(key.startswith(PREFIX) for key in fake.objects)

    run(scenario)


def test_a_patch_costs_no_request_more(tmp_path: Path) -> None:
    fake = FakeS3()

    async def requests_of_a_patch(store: S3Store, upload_id: str, storage: dict[str, str]) -> list[str]:
        await store.create(UploadInfo(id=upload_id, size=PART + 10, storage=storage))
        await write(store, upload_id, DATA[:100])
        start = len(fake.log)
        await write(store, upload_id, DATA[100:PART], 100)
        return [op for op, _ in fake.log[start:]]

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            by_id = await requests_of_a_patch(store, "plain", {})
            chosen = await requests_of_a_patch(store, "chosen", {"Key": CHOSEN})
            assert chosen == by_id

    run(scenario)


def test_a_zero_byte_upload_at_a_chosen_key(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await store.create(UploadInfo(id="empty", size=0, storage={"Key": "nothing"}))
            assert fake.data(PREFIX + "nothing") == b""
            assert (await store.get_info("empty")).offset == 0
            assert await read_all(store, "empty") == b""
            # No incomplete part: the time is the chosen object's.
            assert await store.last_write_time("empty") == fake.objects[PREFIX + "nothing"].last_modified
            with pytest.raises(UploadNotFound):
                await read_all(store, "missing")

    run(scenario)


def test_terminate_removes_the_chosen_object_or_its_multipart_upload(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await store.create(UploadInfo(id="done", size=3, storage={"Key": "a/done"}))
            await write(store, "done", b"abc")
            await store.create(UploadInfo(id="half", size=10, storage={"Key": "a/half"}))
            await write(store, "half", b"abc")
            assert fake.data(PREFIX + "a/done") == b"abc" and fake.upload_of(PREFIX + "a/half")
            await store.terminate("done")
            await store.terminate("half")
            assert fake.objects == {} and fake.uploads == {}
            with pytest.raises(UploadNotFound):
                await store.get_info("done")

    run(scenario)


def test_concatenation_with_chosen_keys(tmp_path: Path) -> None:
    fake = FakeS3()
    chunks = {"p1": DATA[: PART + 1], "p2": b"small", "p3": DATA[PART + 1 : 2 * PART]}

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            for pid, chunk in chunks.items():
                storage = {"Key": f"parts/{pid}"} if pid != "p2" else {}
                await store.create(UploadInfo(id=pid, size=len(chunk), is_partial=True, storage=storage))
                await write(store, pid, chunk)
            final = await store.create(
                UploadInfo(id="final", size=None, is_final=True, partial_uploads=list(chunks), storage={"Key": "all"})
            )
            await store.concatenate(final, [await store.get_info(pid) for pid in chunks])
            whole = b"".join(chunks.values())
            assert fake.data(PREFIX + "all") == whole and PREFIX + "final" not in fake.objects
            assert fake.data(PREFIX + "parts/p1") == chunks["p1"] and fake.data(PREFIX + "p2") == b"small"
            assert (await store.get_info("final")).offset == len(whole)
            assert await read_all(store, "final") == whole

    run(scenario)


@pytest.mark.parametrize(
    "storage",
    [
        {"Key": "../x"},
        {"Key": "a//b"},
        {"Key": "/abs"},
        {"Key": "x.info"},
        {"Key": "x.part"},
        {"Key": "up.finals/f"},
        {"Key": "k" * 256},
        {"Key": "sp ace"},
        {"Bucket": "other"},
        {"Bucket": "other", "Key": "fine"},
    ],
)
def test_invalid_storage_is_refused_before_anything_is_made(tmp_path: Path, storage: dict[str, str]) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            with pytest.raises(InvalidStorage) as caught:
                await store.create(UploadInfo(id="up", size=3, storage=storage))
            assert caught.value.status == 400
            assert fake.objects == {} and fake.uploads == {}
            assert not [op for op, _ in fake.log if op != "head_bucket"]

    run(scenario)


def test_the_configured_bucket_and_the_id_key_are_accepted(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            info = await store.create(UploadInfo(id="up", size=3, storage={"Bucket": "bucket", "Key": "up"}))
            assert info.storage["Key"] == PREFIX + "up"
            await write(store, "up", b"abc")
            assert fake.data(PREFIX + "up") == b"abc"

    run(scenario)


def test_a_taken_key_is_a_conflict(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await store.create(UploadInfo(id="other", size=3))  # its data key is PREFIX + "other"
            await store.create(UploadInfo(id="first", size=10, storage={"Key": "busy"}))  # in progress
            await store.create(UploadInfo(id="second", size=3, storage={"Key": "done"}))
            await write(store, "second", b"abc")  # finished
            fake.objects[PREFIX + "stray"] = fake.objects[PREFIX + "done"]  # not an upload's
            before = (dict(fake.objects), dict(fake.uploads))
            for key in ("other", "busy", "done", "stray"):
                with pytest.raises(InvalidStorage) as caught:
                    await store.create(UploadInfo(id="new", size=1, storage={"Key": key}))
                assert caught.value.status == 409, key
            assert (fake.objects, fake.uploads) == before
            with pytest.raises(UploadExists):  # a taken ID is still a taken ID
                await store.create(UploadInfo(id="other", size=1, storage={"Key": "free"}))
            # Once its upload is gone, a key is free again.
            await store.terminate("second")
            await store.create(UploadInfo(id="new", size=1, storage={"Key": "done"}))

    run(scenario)


def test_a_recorded_key_outside_the_prefix_is_not_followed() -> None:
    keys = KeyLayout(PREFIX)
    assert keys.data_key(UploadInfo(id="up", storage={"Key": PREFIX + "a/b"})) == PREFIX + "a/b"
    for recorded in ("elsewhere/a", PREFIX + "../a", PREFIX + "x.info", ""):
        assert keys.data_key(UploadInfo(id="up", storage={"Key": recorded})) == PREFIX + "up"
