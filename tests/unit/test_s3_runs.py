"""A *run* of parts: chunked PATCHes of one size cost one S3 request each (writer._continues_run).

On a clean upload, the first lone part names a run (``tus-run = <first>:<size>``) while it
uploads; readers count every part S3 lists after the committed ones, one after another, at that
size. The writes after it in this process (the lock vouching that nobody else wrote) go on with
the run and commit nothing. Any write that might put anything else there (a checksummed chunk
that may yet be refused, several parts that may land out of order, an upload with a leftover)
ends the run first. These tests check what readers count, when the run ends, and what a reader
does if the run ends while it lists.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.client import Body, Part
from pytusd.stores.s3.layout import (
    EMPTY_MD5,
    META_COMMIT,
    META_MULTIPART,
    META_PARTS,
    META_PENDING,
    META_RUN,
    META_WRITTEN,
)
from tests.support.fake_s3 import FakeS3
from tests.unit.test_s3_pending import DATA, HeldParts, part_object_puts
from tests.unit.test_s3_writer import PART, Boom, body, content, create, fresh_offset, opened, run, until


def record(fake: FakeS3) -> dict[str, str]:
    return dict(fake.objects["up.part"].metadata)


async def write(store: S3Store, offset: int, end: int, *, held_here_last: bool = True) -> int:
    """A PATCH as the upload service makes it: the state to write from, then the chunk."""
    info = await store.get_info_to_write("up", held_here_last=held_here_last)
    assert info.offset == offset
    return await store.write_chunk("up", offset, body(DATA[offset:end]), length=end - offset)


class CountedHeldParts(HeldParts):
    entered = 0

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        self.entered += 1
        return await super().upload_part(key, upload_id, number, body, size, md5)


async def begin(store: S3Store, size: int = len(DATA)) -> None:
    """A new upload, and its first part, which names the run."""
    await create(store, size=size)
    await write(store, 0, PART, held_here_last=False)


def test_parts_of_a_run_count_as_they_land_and_commit_nothing(tmp_path: Path) -> None:
    fake = CountedHeldParts()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
            assert record(fake)[META_PARTS] == "0" and record(fake)[META_RUN] == f"1:{PART}"
            puts = part_object_puts(fake)
            fake.release.clear()
            second = asyncio.create_task(write(store, PART, 2 * PART))
            await until(lambda: _uploading(fake))
            assert await fresh_offset(fake, tmp_path) == PART  # not landed: not counted
            fake.release.set()
            assert await second == PART
            assert part_object_puts(fake) == puts  # no commit: the run counts it
            assert await fresh_offset(fake, tmp_path) == 2 * PART
            assert (await store.get_info("up")).offset == 2 * PART
            await write(store, 2 * PART, len(DATA))  # completes it
            assert await content(store) == DATA

    run(scenario)


async def _uploading(fake: CountedHeldParts) -> bool:
    return fake.entered >= 2


def test_a_reader_counts_a_run_in_order_and_at_its_size(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
            await write(store, PART, 2 * PART)
        parts = fake.upload_of("up").parts
        assert await fresh_offset(fake, tmp_path) == 2 * PART
        second = parts.pop(2)
        parts[3] = second  # a gap: nothing after it counts
        assert await fresh_offset(fake, tmp_path) == PART
        parts[2] = (second[0][:-1], second[1])  # another size: the run ends before it
        assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


class RecordAtUpload(FakeS3):
    """Notes what the incomplete part names whenever a part upload starts."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, str]] = []

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        self.seen.append(dict(self.objects["up.part"].metadata) if "up.part" in self.objects else {})
        return await super().upload_part(key, upload_id, number, body, size, md5)


def test_a_checksummed_chunk_ends_the_run_before_its_part_goes_up(tmp_path: Path) -> None:
    """Its part lands before the checksum is known; under the run a reader would count it."""
    fake = RecordAtUpload()
    bad = bytes(reversed(DATA[PART : 2 * PART]))

    async def landed() -> bool:
        return 2 in fake.upload_of("up").parts

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
            assert META_RUN in record(fake)
            await store.get_info_to_write("up", held_here_last=True)
            with pytest.raises(Boom):
                refused = body(bad, lambda: until(landed), Boom())
                await store.write_chunk("up", PART, refused, all_or_nothing=True, length=PART)
            assert META_RUN not in fake.seen[-1] and fake.seen[-1][META_PARTS] == "1"
            assert await landed()
            assert (await store.get_info("up")).offset == PART
            assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


def test_a_write_beside_a_leftover_ends_the_run_first(tmp_path: Path) -> None:
    fake = RecordAtUpload()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
        fake.upload_of("up").parts[4] = (b"leftover", '"leftover"')
        async with opened(fake, tmp_path) as store:  # another server: reads, finds it unclean
            await write(store, PART, 2 * PART, held_here_last=False)
            assert META_RUN not in fake.seen[-1] and fake.seen[-1][META_PARTS] == "1"
            assert await fresh_offset(fake, tmp_path) == 2 * PART
            await write(store, 2 * PART, len(DATA))
            assert await content(store) == DATA

    run(scenario)


class EndsRunWhileListed(FakeS3):
    """On the first listing after :attr:`armed`, a writer ends the run (a plain commit of one part)
    and a part it then uploads lands, at the run's size: what a checksummed write does before it
    is refused."""

    armed = False

    async def list_parts(self, key: str, upload_id: str, up_to: int, after: int = 0) -> list[Part]:
        if self.armed:
            self.armed = False
            head = self.objects["up.part"]
            plain = {k: v for k, v in head.metadata.items() if k != META_RUN}
            head.metadata = plain | {META_COMMIT: "other", META_PARTS: "1"}
            data, _ = self.upload_of("up").parts[1]
            self.upload_of("up").parts[2] = (bytes(len(data)), '"refused"')
        return await super().list_parts(key, upload_id, up_to, after)


def test_a_reader_reads_again_if_the_run_ended_while_it_listed(tmp_path: Path) -> None:
    fake = EndsRunWhileListed()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
        fake.armed = True
        # The listing shows part 2 at the run's size, but the run no longer stands: not counted.
        assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


class TimedParts(FakeS3):
    """Lists parts with the time they were uploaded, as S3 does."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[int, float] = {}

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        etag = await super().upload_part(key, upload_id, number, body, size, md5)
        self.times[number] = time.time()
        return etag

    async def list_parts(self, key: str, upload_id: str, up_to: int, after: int = 0) -> list[Part]:
        listed = await super().list_parts(key, upload_id, up_to, after)
        return [Part(p.number, p.size, p.etag, self.times.get(p.number, 0.0)) for p in listed]


def test_an_upload_written_in_a_run_was_written_when_its_last_part_landed(tmp_path: Path) -> None:
    """Expiry asks when an upload was last written: a run's writes commit nothing to tell it."""
    fake = TimedParts()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
            fake.objects["up.part"].metadata[META_WRITTEN] = f"{time.time() - 3600:.6f}"  # an hour ago
            await write(store, PART, 2 * PART)
            assert await store.last_write_time("up") >= fake.times[2] > time.time() - 60

    run(scenario)


def test_the_last_part_ends_the_run_before_it_goes_up(tmp_path: Path) -> None:
    """Else a reader could find every byte there before the writer completed the upload, and
    complete it too (a GET of an unfinished upload does)."""
    fake = RecordAtUpload()
    size = 3 * PART

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store, size)
            await write(store, PART, 2 * PART)
            assert record(fake)[META_RUN] == f"1:{PART}" and META_RUN in fake.seen[-1]
            await write(store, 2 * PART, size)
            assert META_RUN not in fake.seen[-1] and fake.seen[-1][META_PARTS] == "2"
            assert await content(store) == DATA[:size]

    run(scenario)


def test_the_time_of_a_run_whose_multipart_upload_is_gone_is_no_error(tmp_path: Path) -> None:
    """Completed or terminated between the reads: the object's time, else the commit's."""
    fake = TimedParts()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
            info = await store.get_info("up")
            await fake.abort("up", info.storage["MultipartUploadId"])
            assert await store.last_write_time("up") > time.time() - 60

    run(scenario)


class SlowToLand(FakeS3):
    """A part upload takes its whole body, then S3 takes a moment to store it."""

    taken = 0

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        chunks = [chunk async for chunk in body]
        self.taken += 1
        await asyncio.sleep(0.2)
        return await super().upload_part(key, upload_id, number, _replay(chunks), size, md5)


async def _taken(fake: SlowToLand) -> bool:
    return fake.taken > 0


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def test_a_refused_chunk_lets_its_whole_part_land_before_it_answers(tmp_path: Path) -> None:
    """Cancelled, the part S3 had whole could land after a retry on another server put the
    client's bytes under its number. Landed before the answer, it is a leftover the retry sees."""
    fake = SlowToLand()
    bad = bytes(reversed(DATA[:PART]))

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            with pytest.raises(Boom):
                # The whole part, all of it handed to S3, then the checksum fails.
                refused = body(bad, lambda: until(lambda: _taken(fake)), Boom())
                await store.write_chunk("up", 0, refused, all_or_nothing=True, length=PART)
            assert 1 in fake.upload_of("up").parts  # landed before the answer
            assert await fresh_offset(fake, tmp_path) == 0
            assert (await store.get_info_to_write("up")).offset == 0
            await write(store, 0, PART, held_here_last=False)  # the retry replaces it
            assert fake.upload_of("up").parts[1][0] == DATA[:PART]
            assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


def test_expiry_right_after_the_lock_vouched_asks_s3_nothing(tmp_path: Path) -> None:
    """A PATCH checks expiry right after its read: when the lock vouched that this process wrote
    last, the end of that write is the answer (for a run, S3 would have to list parts)."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            before = time.time()
            await write(store, 0, PART, held_here_last=False)
            after = time.time()
            await store.get_info_to_write("up", held_here_last=True)
            mark = len(fake.log)
            assert before <= await store.last_write_time("up") <= after
            assert fake.log[mark:] == []
            await store.last_write_time("up")  # used once: a HEAD's check asks S3
            assert fake.log[mark:]
            await store.get_info_to_write("up", held_here_last=False)  # the lock did not vouch
            mark = len(fake.log)
            await store.last_write_time("up")
            assert fake.log[mark:]

    run(scenario)


def test_a_refused_chunk_cancels_at_once_a_part_s3_has_not_taken(tmp_path: Path) -> None:
    """Only a part whose body was all handed to S3 is let land; one still waiting is cancelled."""
    fake = HeldParts()
    bad = bytes(reversed(DATA[:PART]))

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            fake.release.clear()  # S3 takes no body at all
            refused = body(bad, Boom())
            write = asyncio.create_task(store.write_chunk("up", 0, refused, all_or_nothing=True, length=PART))
            done, _ = await asyncio.wait([write], timeout=5)  # not SETTLE_WHOLE_FOR
            assert done and isinstance(write.exception(), Boom)
            fake.release.set()
            await asyncio.sleep(0.05)
            assert 1 not in fake.upload_of("up").parts

    run(scenario)


def test_an_empty_patch_is_no_write_for_expiry(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
            await store.get_info_to_write("up", held_here_last=True)
            ended = await store.last_write_time("up")
            await asyncio.sleep(0.01)
            await store.get_info_to_write("up", held_here_last=True)
            assert await store.write_chunk("up", PART, body(b""), length=0) == 0
            await store.get_info_to_write("up", held_here_last=True)
            assert await store.last_write_time("up") == ended

    run(scenario)


def test_the_locks_word_does_not_outlive_it(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await begin(store)
            await store.get_info_to_write("up", held_here_last=True)
            store.forget_read_to_write("up")  # the lock is released (a hook refused, say)
            mark = len(fake.log)
            await store.last_write_time("up")
            assert fake.log[mark:]  # asked S3

    run(scenario)


def test_a_part_named_by_size_that_never_landed_goes_before_any_part(tmp_path: Path) -> None:
    """An earlier version named a lone part pending by its size alone, and it never landed: a
    refused checksummed chunk's part of that size must not count under that name."""
    fake = RecordAtUpload()
    bad = bytes(reversed(DATA[:PART]))

    async def landed() -> bool:
        return 1 in fake.upload_of("up").parts

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            info = await create(store, size=len(DATA))
        named = {META_PARTS: "0", META_MULTIPART: info.storage["MultipartUploadId"], META_PENDING: f"1:{PART}:"}
        await fake.put("up.part", b"", 0, EMPTY_MD5, metadata=named)
        async with opened(fake, tmp_path) as store:
            assert (await store.get_info_to_write("up")).offset == 0
            with pytest.raises(Boom):
                refused = body(bad, lambda: until(landed), Boom())
                await store.write_chunk("up", 0, refused, all_or_nothing=True, length=PART)
            assert META_PENDING not in fake.seen[-1]
            assert await landed()
            assert await fresh_offset(fake, tmp_path) == 0

    run(scenario)
