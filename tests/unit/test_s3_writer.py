"""The S3 store's commit logic (pytusd.stores.s3.writer and .commit) on an in-memory bucket.

What a write leaves in S3 decides what every later request, restart or other instance sees, so
these tests look at the bucket itself (tests/support/fake_s3.py) and at what a *fresh* store on
the same bucket computes, never only at the writing store's answer. The same store runs against
a real Swift in tests/integration/test_s3_store.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.base import StoreError
from pytusd.stores.s3 import S3Error, S3Store
from pytusd.stores.s3.layout import META_COMPLETE, META_MULTIPART, META_PARTS, STORAGE_MULTIPART, pending_part, run_of
from tests.support.fake_s3 import FakeS3

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 allows, and the store's part size here
DATA = os.urandom(4 * PART + 12345)

Step = bytes | Callable[[], Awaitable[Any]] | BaseException


class Boom(Exception):
    """The request body broke (a client that went away, a checksum that did not match)."""


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(scenario(), 60)

    return asyncio.run(bounded())


@pytest.fixture
def fake() -> FakeS3:
    return FakeS3()


@contextlib.asynccontextmanager
async def opened(fake: FakeS3, tmp_path: Path, part_size: int = PART) -> AsyncIterator[S3Store]:
    store = S3Store("bucket", client=fake, part_size=part_size, max_concurrent_parts=4, temp_dir=str(tmp_path))
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def body(*steps: Step, step: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A request body: bytes arrive in pieces of ``step``; callables are awaited in between (the
    body pauses there), exceptions are raised (the body breaks)."""
    for item in steps:
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            await item()
            continue
        for start in range(0, len(item), step):
            await asyncio.sleep(0)
            yield item[start : start + step]


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait for ``condition``; a hang fails the test instead of stalling it."""
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - polls the bucket, which has no event
            await asyncio.sleep(0.01)


async def fresh_offset(fake: FakeS3, tmp_path: Path, upload_id: str = "up") -> int:
    """The offset a restarted server (a new store on the same bucket) computes."""
    async with opened(fake, tmp_path) as other:
        return (await other.get_info(upload_id)).offset


def incomplete_part(fake: FakeS3, upload_id: str = "up") -> tuple[int, int]:
    """(parts that count, bytes of the incomplete part), as the incomplete-part object says: the
    committed parts, and the pending part it names once that has landed with its size and MD5,
    or the parts of the run it names that landed one after another at the run's size."""
    obj = fake.objects[f"{upload_id}.part"]
    count = int(obj.metadata[META_PARTS])
    pending = pending_part(obj.metadata, count)
    parts = fake.upload_of(upload_id).parts
    landed = parts.get(count + 1)
    if pending is not None and landed is not None and (len(landed[0]), md5_hex(landed[0])) == pending:
        count += 1
    run = run_of(obj.metadata) if not obj.data else None
    while run is not None and count + 1 in parts and len(parts[count + 1][0]) == run[1]:
        count += 1
    return count, len(obj.data)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def uploaded_parts(fake: FakeS3, upload_id: str = "up") -> dict[int, int]:
    """Part number -> size of every part in S3, committed or not."""
    return {n: len(data) for n, (data, _) in fake.upload_of(upload_id).parts.items()}


async def create(store: S3Store, upload_id: str = "up", size: int | None = len(DATA), **fields: Any) -> UploadInfo:
    return await store.create(UploadInfo(id=upload_id, size=size, **fields))


async def content(store: S3Store, upload_id: str = "up") -> bytes:
    return b"".join([block async for block in store.read(upload_id)])


# -- parts, the incomplete part and its count -------------------------------------------------------


def test_parts_are_committed_as_they_finish(fake: FakeS3, tmp_path: Path) -> None:
    """A slow body's bytes count while it still arrives: its parts, then the spooled bytes."""
    seen: list[tuple[int, int]] = []

    async def part_done() -> None:
        # Exactly one part so far, nothing spooled: only the part's own commit can count it.
        await until(lambda: _parts_committed(fake, 1))
        seen.append(incomplete_part(fake))
        assert await fresh_offset(fake, tmp_path) == PART

    async def spooled() -> None:
        # The body pauses with 1,000 bytes spooled for the next part: they are committed too.
        await until(lambda: _fresh_offset_is(fake, tmp_path, PART + 1000))
        seen.append(incomplete_part(fake))

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            source = body(DATA[:PART], part_done, DATA[PART : PART + 1000], spooled, DATA[PART + 1000 : 2 * PART + 100])
            assert await store.write_chunk("up", 0, source) == 2 * PART + 100
        assert seen == [(1, 0), (1, 1000)]
        assert incomplete_part(fake) == (2, 100)
        assert uploaded_parts(fake) == {1: PART, 2: PART}
        assert await fresh_offset(fake, tmp_path) == 2 * PART + 100

    run(scenario)


async def _parts_committed(fake: FakeS3, count: int) -> bool:
    return "up.part" in fake.objects and incomplete_part(fake)[0] == count


async def _fresh_offset_is(fake: FakeS3, tmp_path: Path, offset: int) -> bool:
    return await fresh_offset(fake, tmp_path) == offset


def test_the_incomplete_part_carries_the_count_and_the_tail(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            info = await create(store)
            assert await store.write_chunk("up", 0, body(DATA[:100])) == 100
            assert incomplete_part(fake) == (0, 100)
            assert uploaded_parts(fake) == {}
            head = fake.objects["up.part"]
            assert head.metadata[META_MULTIPART] == info.storage[STORAGE_MULTIPART]
            assert fake.objects["up.part"].data == DATA[:100]

            # The tail is continued from this process's cache: the incomplete part is not read back.
            log = len(fake.log)
            assert await store.write_chunk("up", 100, body(DATA[100:250])) == 150
            assert ("get_object", "up.part") not in fake.log[log:]
            assert incomplete_part(fake) == (0, 250)

            # A tail that grows past a part: the old tail is inside part 1, the rest is the new tail.
            assert await store.write_chunk("up", 250, body(DATA[250 : PART + 400])) == PART + 150
            assert incomplete_part(fake) == (1, 400)
            assert uploaded_parts(fake) == {1: PART}
            assert fake.upload_of("up").parts[1][0] == DATA[:PART]
            assert fake.objects["up.part"].data == DATA[PART : PART + 400]
            assert (await store.get_info("up")).offset == PART + 400
        assert await fresh_offset(fake, tmp_path) == PART + 400

    run(scenario)


def test_a_tail_of_a_whole_part_goes_up_as_a_part(fake: FakeS3, tmp_path: Path) -> None:
    """At a request's end, a tail that S3 accepts as a part (5 MiB) goes up as one, though it is
    smaller than the part size, as long as the rest of the upload still fits."""
    tail = PART + MiB // 2

    async def scenario() -> None:
        async with opened(fake, tmp_path, part_size=PART + MiB) as store:
            await create(store)
            assert await store.write_chunk("up", 0, body(DATA[:tail])) == tail
            assert incomplete_part(fake) == (1, 0)
            assert uploaded_parts(fake) == {1: tail}
            # Smaller than S3's minimum part: stays the incomplete part.
            assert await store.write_chunk("up", tail, body(DATA[tail : tail + PART - 1])) == PART - 1
            assert incomplete_part(fake) == (1, PART - 1)
            assert uploaded_parts(fake) == {1: tail}
            assert fake.objects["up.part"].data == DATA[tail : tail + PART - 1]

    run(scenario)


# -- all or nothing -------------------------------------------------------------------------------


def test_all_or_nothing_never_counts_a_failing_chunk(fake: FakeS3, tmp_path: Path) -> None:
    async def parts_up() -> None:
        await until(lambda: _uploaded(fake, 2))

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            await store.write_chunk("up", 0, body(DATA[:100]))
            before = fake.objects["up.part"].etag
            chunk = DATA[100 : 2 * PART + 150]
            with pytest.raises(Boom):
                await store.write_chunk("up", 100, body(chunk, parts_up, Boom()), all_or_nothing=True)
            # Two parts went up, yet nothing counts: the incomplete part was not touched.
            assert fake.calls["upload_part"] == 2
            assert fake.objects["up.part"].etag == before
            assert incomplete_part(fake) == (0, 100)
            assert (await store.get_info("up")).offset == 100
            assert await fresh_offset(fake, tmp_path) == 100
            assert os.listdir(store._temp_dir) == []  # no spool left behind

            # The same chunk again, whole: now it counts, over the parts of the failed attempt.
            assert await store.write_chunk("up", 100, body(chunk), all_or_nothing=True) == len(chunk)
            assert incomplete_part(fake) == (2, 150)
            assert fake.upload_of("up").parts[1][0] == DATA[:PART]
            assert fake.upload_of("up").parts[2][0] == DATA[PART : 2 * PART]
            assert (
                await store.write_chunk("up", 2 * PART + 150, body(DATA[2 * PART + 150 :]))
                == len(DATA) - 2 * PART - 150
            )
            assert await content(store) == DATA

    run(scenario)


async def _uploaded(fake: FakeS3, count: int) -> bool:
    return len(fake.upload_of("up").parts) >= count


def test_all_or_nothing_commits_only_at_its_end(fake: FakeS3, tmp_path: Path) -> None:
    async def pause() -> None:
        await asyncio.sleep(0.5)  # longer than COMMIT_EVERY: a progressive write commits here
        assert "up.part" not in fake.objects
        assert await fresh_offset(fake, tmp_path) == 0

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            chunk = DATA[: PART + 20]
            assert await store.write_chunk("up", 0, body(chunk, pause), all_or_nothing=True) == len(chunk)
            assert incomplete_part(fake) == (1, 20)
            assert fake.calls["put_object"] == 2  # the info object at creation, and one commit

    run(scenario)


# -- S3 failing -----------------------------------------------------------------------------------


def test_s3_error_mid_body_keeps_what_was_committed(fake: FakeS3, tmp_path: Path) -> None:
    async def part_committed() -> None:
        await until(lambda: _parts_committed(fake, 1))
        fake.fail("upload_part")  # the next part fails

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            with pytest.raises(S3Error) as caught:
                await store.write_chunk("up", 0, body(DATA[:PART], part_committed, DATA[PART : 2 * PART + 1000]))
            assert (caught.value.operation, caught.value.code) == ("upload_part", "InternalError")
            # Part 1 was committed before part 2 failed; part 2 and the 1,000 bytes after it never count.
            assert incomplete_part(fake) == (1, 0)
            assert uploaded_parts(fake) == {1: PART}
            assert (await store.get_info("up")).offset == PART
            assert os.listdir(store._temp_dir) == []
        assert await fresh_offset(fake, tmp_path) == PART

        # The client resumes where the server says.
        async with opened(fake, tmp_path) as store:
            assert await store.write_chunk("up", PART, body(DATA[PART:])) == len(DATA) - PART
            assert await content(store) == DATA

    run(scenario)


@pytest.mark.parametrize("applied", [False, True], ids=["lost", "answer-lost"])
def test_a_failed_commit_counts_what_s3_holds(fake: FakeS3, tmp_path: Path, applied: bool) -> None:
    """The commit point is one PutObject: if it fails, the write did not happen; if S3 did it but
    the answer was lost, it did. Either way the offset is what S3 holds, never in between."""

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            await store.write_chunk("up", 0, body(DATA[:100]))
            fake.fail("put_object", key="up.part", applied=applied)
            with pytest.raises(S3Error):
                await store.write_chunk("up", 100, body(DATA[100 : PART + 300]))
            expected = PART + 300 if applied else 100
            assert incomplete_part(fake) == ((1, 300) if applied else (0, 100))
            assert (await store.get_info("up")).offset == expected
            assert os.listdir(store._temp_dir) == []
        assert await fresh_offset(fake, tmp_path) == expected
        async with opened(fake, tmp_path) as store:
            assert await store.write_chunk("up", expected, body(DATA[expected:])) == len(DATA) - expected
            assert await content(store) == DATA

    run(scenario)


def test_a_source_that_breaks_keeps_its_bytes(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            with pytest.raises(Boom):
                await store.write_chunk("up", 0, body(DATA[: PART + 70], Boom()))
            assert incomplete_part(fake) == (1, 70)
        assert await fresh_offset(fake, tmp_path) == PART + 70

    run(scenario)


# -- restart --------------------------------------------------------------------------------------


def test_a_fresh_store_sees_the_same_upload(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as first:
            await create(first, metadata={"filename": "a.bin"})
            await first.write_chunk("up", 0, body(DATA[: 2 * PART + 500]))
            before = await first.get_info("up")
            written_at = await first.last_write_time("up")
        async with opened(fake, tmp_path) as second:
            after = await second.get_info("up")
            assert (after.offset, after.size, after.metadata) == (2 * PART + 500, len(DATA), {"filename": "a.bin"})
            assert after.storage == before.storage
            assert await second.last_write_time("up") == written_at
            # No cache here: the incomplete part is read back from S3, once.
            log = len(fake.log)
            assert await second.write_chunk("up", after.offset, body(DATA[after.offset :])) == len(DATA) - after.offset
            assert fake.log[log:].count(("get_object", "up.part")) == 1
            assert await content(second) == DATA

    run(scenario)


def test_a_write_cancelled_mid_body_leaves_what_was_committed(fake: FakeS3, tmp_path: Path) -> None:
    """As close to a crash as one process gets: the request's task dies mid-body."""

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            hold = asyncio.Event()

            async def stall() -> None:
                await until(lambda: _parts_committed(fake, 1))
                hold.set()
                await asyncio.sleep(3600)

            task = asyncio.create_task(store.write_chunk("up", 0, body(DATA[:PART], stall, DATA[PART:])))
            await asyncio.wait_for(hold.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert incomplete_part(fake) == (1, 0)
            assert os.listdir(store._temp_dir) == []
        assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


# -- completion -----------------------------------------------------------------------------------


def test_the_last_write_completes_the_upload(fake: FakeS3, tmp_path: Path) -> None:
    data = DATA[: PART + 10]

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(data), metadata={"filetype": "image/png"})
            assert await store.write_chunk("up", 0, body(data[:100])) == 100
            assert await store.write_chunk("up", 100, body(data[100:])) == len(data) - 100
            assert fake.data("up") == data
            assert fake.objects["up"].content_type == "image/png"
            assert fake.objects["up"].etag.endswith('-2"')  # part 1 and the 10-byte last part
            assert fake.uploads == {}
            marker = fake.objects["up.part"]
            assert (marker.data, marker.metadata[META_COMPLETE]) == (b"", "1")
            info = await store.get_info("up")
            assert (info.offset, info.is_complete) == (len(data), True)
            assert await content(store) == data
            with pytest.raises(StoreError, match="complete"):
                await store.write_chunk("up", len(data), body(b"more"))
        assert await fresh_offset(fake, tmp_path) == len(data)

    run(scenario)


def test_declaring_the_length_of_stored_bytes_completes_by_copy(fake: FakeS3, tmp_path: Path) -> None:
    data = DATA[: PART + 10]

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=None)
            assert await store.write_chunk("up", 0, body(data)) == len(data)
            assert incomplete_part(fake) == (1, 10)
            uploads = fake.calls["upload_part"]
            await store.declare_length("up", len(data))
            # The incomplete part became the last part inside S3: nothing uploaded again.
            assert fake.calls["upload_part"] == uploads
            assert fake.calls["upload_part_copy"] == 1
            assert fake.data("up") == data
            assert (await store.get_info("up")).offset == len(data)

    run(scenario)


def test_an_empty_upload_is_an_empty_object_at_once(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            info = await create(store, size=0)
            assert info.storage[STORAGE_MULTIPART] == ""
            assert fake.data("up") == b""
            assert fake.uploads == {}
            assert (await store.get_info("up")).is_complete
            assert await store.write_chunk("up", 0, body(b"")) == 0

    run(scenario)


# -- concatenation --------------------------------------------------------------------------------


def test_concatenation_copies_large_partials_and_assembles_small_ones(fake: FakeS3, tmp_path: Path) -> None:
    sizes = {"p1": PART + 1, "p2": 10, "p3": 20, "p4": PART}

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            chunks: list[bytes] = []
            position = 0
            for pid, size in sizes.items():
                chunk = DATA[position : position + size]
                position += size
                chunks.append(chunk)
                await create(store, pid, size=size, is_partial=True)
                await store.write_chunk(pid, 0, body(chunk))
            final = await create(store, "final", size=None, is_final=True, partial_uploads=list(sizes))
            partials = [await store.get_info(pid) for pid in sizes]
            copies, uploads = fake.calls.get("upload_part_copy", 0), fake.calls["upload_part"]
            log = len(fake.log)
            await store.concatenate(final, partials)
            # p1 is copied whole; p2, p3 and the first 5 MiB - 30 bytes of p4 are assembled here
            # into one part of exactly 5 MiB; the last 30 bytes of p4 are copied.
            assert fake.calls["upload_part_copy"] - copies == 2
            assert fake.calls["upload_part"] - uploads == 1
            reads = [key for op, key in fake.log[log:] if op == "get_object" and key in sizes]
            assert reads == ["p2", "p3", "p4"]
            assert fake.data("final") == b"".join(chunks)
            assert fake.objects["final"].etag.endswith('-3"')
            assert (await store.get_info("final")).offset == sum(sizes.values())
            for pid, chunk in zip(sizes, chunks, strict=True):
                assert fake.data(pid) == chunk  # partials are untouched

    run(scenario)
