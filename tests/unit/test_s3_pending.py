"""A write of one part commits it as *pending* while it uploads (writer._commit_while_landing).

On an upload that is not clean (here a leftover part far above the others: see test_s3_runs for
clean ones), the incomplete part names the part's number, size and MD5 before the part lands;
readers count it once S3 lists it so. These tests hold the part's upload until the commit is in S3 (a commit
that waited for the part would hang them, bounded by ``run``), and check what readers beside the
writer, after it, and after failures count.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pytusd.stores.base import StoreError
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.client import Body
from pytusd.stores.s3.layout import META_PARTS, META_PENDING
from pytusd.stores.s3.parts import MAX_PARTS
from tests.support.fake_s3 import FakeS3
from tests.unit.test_s3_streaming import Spliced
from tests.unit.test_s3_writer import (
    PART,
    body,
    content,
    create,
    fresh_offset,
    incomplete_part,
    md5_hex,
    opened,
    run,
    until,
)

DATA = bytes(range(256)) * (3 * PART // 256)


class HeldParts(FakeS3):
    """Holds every part upload, once its body is in, until :attr:`release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.release.set()

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        await self.release.wait()
        return await super().upload_part(key, upload_id, number, body, size, md5)


class OpaqueEtags(FakeS3):
    """Part ETags that are not MD5s (as with some S3 encryption settings)."""

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        await super().upload_part(key, upload_id, number, body, size, md5)
        data, _ = self.upload_of(key).parts[number]
        self.upload_of(key).parts[number] = (data, f'"opaque-{number}"')
        return f'"opaque-{number}"'


async def leave_a_leftover(fake: FakeS3, store: S3Store) -> None:
    """A part far above the others, left by some earlier try: the upload is never clean (and
    the write that follows starts from the handler's read, which saw it)."""
    fake.upload_of("up").parts[MAX_PARTS] = (b"leftover", '"leftover"')
    await store.get_info_to_write("up")


async def names_a_pending_part(fake: FakeS3) -> bool:
    return "up.part" in fake.objects and META_PENDING in fake.objects["up.part"].metadata


def part_object_puts(fake: FakeS3) -> int:
    return sum(1 for operation, key in fake.log if operation == "put_object" and key == "up.part")


def test_a_lone_part_is_committed_while_it_uploads(tmp_path: Path) -> None:
    fake = HeldParts()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await leave_a_leftover(fake, store)
            fake.release.clear()
            write = asyncio.create_task(store.write_chunk("up", 0, body(DATA[:PART]), length=PART))
            # The commit names the part before it lands: readers still count none of it.
            await until(lambda: names_a_pending_part(fake))
            assert fake.objects["up.part"].metadata[META_PARTS] == "0"
            assert await fresh_offset(fake, tmp_path) == 0
            puts = part_object_puts(fake)
            fake.release.set()
            assert await write == PART
            # Landed: it counts, for a restarted server too, and no commit came after it.
            assert part_object_puts(fake) == puts
            assert incomplete_part(fake) == (1, 0)
            assert await fresh_offset(fake, tmp_path) == PART
            assert (await store.get_info("up")).offset == PART
            assert await store.write_chunk("up", PART, body(DATA[PART:]), length=len(DATA) - PART) == len(DATA) - PART
            assert await content(store) == DATA

    run(scenario)


def test_the_writer_remembers_the_landed_part(tmp_path: Path) -> None:
    """The part list of a pending commit is remembered once the part landed: no listing."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await leave_a_leftover(fake, store)
            await store.write_chunk("up", 0, body(DATA[:PART]), length=PART)
            listed = fake.calls.get("list_parts", 0)
            assert (await store.get_info("up")).offset == PART
            assert fake.calls.get("list_parts", 0) == listed
        # Another store lists it once, then remembers it too.
        assert await fresh_offset(fake, tmp_path) == PART
        assert fake.calls["list_parts"] == listed + 1

    run(scenario)


def test_a_pending_part_that_never_lands_does_not_count(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await store.write_chunk("up", 0, body(DATA[:PART]), length=PART)
            fake.fail("upload_part")
            with pytest.raises(StoreError):  # the failed part upload is reported
                await store.write_chunk("up", PART, body(DATA[PART : 2 * PART]), length=PART)
            assert incomplete_part(fake) == (1, 0)
            assert (await store.get_info("up")).offset == PART
            assert await fresh_offset(fake, tmp_path) == PART
            # The client resumes at the offset it is told; the upload ends whole.
            assert await store.write_chunk("up", PART, body(DATA[PART:]), length=len(DATA) - PART) == len(DATA) - PART
            assert await content(store) == DATA

    run(scenario)


def test_another_part_under_the_pending_number_does_not_count(tmp_path: Path) -> None:
    """A part left over from an earlier try, or a different one, is not the part the commit named."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await leave_a_leftover(fake, store)
            await store.write_chunk("up", 0, body(DATA[:PART]), length=PART)
        parts = fake.upload_of("up").parts
        data, etag = parts[1]
        other = data[:-1] + bytes([data[-1] ^ 1])  # same size, other bytes
        parts[1] = (other, f'"{md5_hex(other)}"')
        assert await fresh_offset(fake, tmp_path) == 0
        parts[1] = (data[:-1], f'"{md5_hex(data[:-1])}"')  # shorter
        assert await fresh_offset(fake, tmp_path) == 0
        parts[1] = (data, etag)
        assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


def test_a_part_whose_etag_is_no_md5_gets_an_ordinary_commit(tmp_path: Path) -> None:
    fake = OpaqueEtags()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await leave_a_leftover(fake, store)
            await store.write_chunk("up", 0, body(DATA[:PART]), length=PART)
        metadata = fake.objects["up.part"].metadata
        assert metadata[META_PARTS] == "1" and META_PENDING not in metadata
        assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


def test_a_checksummed_chunk_is_never_pending(tmp_path: Path) -> None:
    """All or nothing: its part must not count before the chunk is verified, so no early naming."""
    fake = HeldParts()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await store.write_chunk("up", 0, body(DATA[:PART]), length=PART, all_or_nothing=True)
        metadata = fake.objects["up.part"].metadata
        assert metadata[META_PARTS] == "1" and META_PENDING not in metadata

    run(scenario)


def test_a_part_that_fails_while_its_body_is_spliced_in_leaves_no_spool(tmp_path: Path) -> None:
    """The part fails at once; the serving layer still moves the body into its spool until the
    piece is full (the writer learns of the failure between pieces): that file goes too."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            fake.fail("upload_part")
            with pytest.raises(StoreError):  # the failed part is reported
                await store.write_chunk("up", 0, Spliced(DATA), length=len(DATA))
            assert os.listdir(store._temp_dir) == []
            assert (await store.get_info("up")).offset == 0

    run(scenario)


def test_a_part_that_failed_before_its_body_broke_is_a_store_error(tmp_path: Path) -> None:
    """Nothing to take back: the write fails with S3's error (not an internal one)."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            fake.fail("upload_part")

            async def failed() -> None:
                await until(lambda: _failed(fake))

            with pytest.raises(StoreError):  # S3's error, not an internal one
                await store.write_chunk("up", 0, body(DATA[:1000], failed, OSError("client gone")), length=PART)
            assert (await store.get_info("up")).offset == 0

    run(scenario)


async def _failed(fake: FakeS3) -> bool:
    return all(fault.fired for fault in fake.faults)
