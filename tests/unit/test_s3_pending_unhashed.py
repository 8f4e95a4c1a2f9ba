"""Without content hashes, a lone part is named before it lands only on a *clean* upload (State.clean).

With no MD5 to tell the part by, a reader counts whatever S3 lists under the number with the
size named. So the writer names it only where S3 listed nothing above the counted parts: a new
upload, one read with a look above them (a ListParts more, only before writes), or one whose
every write here since landed whole. There it names a *run* (as with content hashes, see
test_s3_runs). Anything else (a leftover, a try that failed, a pending part that never landed)
gets the ordinary commit after the part.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pytusd.stores.base import StoreError
from pytusd.stores.s3 import S3Store, recall
from pytusd.stores.s3.client import Body
from pytusd.stores.s3.layout import META_PARTS, META_PENDING, META_RUN
from tests.support.fake_s3 import FakeS3
from tests.unit.test_s3_pending import DATA, HeldParts, part_object_puts
from tests.unit.test_s3_writer import PART, Boom, body, content, create, fresh_offset, run, until

LONGER = DATA + DATA[: PART + 1]


@asynccontextmanager
async def unhashed(fake: FakeS3, tmp_path: Path, *, hashes: bool = False) -> AsyncIterator[S3Store]:
    store = S3Store("bucket", client=fake, part_size=PART, temp_dir=str(tmp_path), content_hashes=hashes)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def metadata(fake: FakeS3) -> dict[str, str]:
    return dict(fake.objects["up.part"].metadata)


async def names_a_run(fake: FakeS3) -> bool:
    return "up.part" in fake.objects and META_RUN in fake.objects["up.part"].metadata


def names_a_part(fake: FakeS3) -> bool:
    """Whether the incomplete part names a part before it lands: a pending one, or a run."""
    return META_PENDING in metadata(fake) or META_RUN in metadata(fake)


async def write(store: S3Store, offset: int, end: int, *, held_here_last: bool = False, data: bytes = DATA) -> int:
    """A PATCH as the upload service makes it: the state to write from, then the chunk."""
    info = await store.get_info_to_write("up", held_here_last=held_here_last)
    assert info.offset == offset
    return await store.write_chunk("up", offset, body(data[offset:end]), length=end - offset)


def test_a_lone_part_of_a_new_upload_names_a_run_and_counts_once_landed(tmp_path: Path) -> None:
    fake = HeldParts()

    async def scenario() -> None:
        async with unhashed(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            fake.release.clear()
            task = asyncio.create_task(write(store, 0, PART))
            await until(lambda: names_a_run(fake))
            assert metadata(fake)[META_PARTS] == "0" and metadata(fake)[META_RUN] == f"1:{PART}"
            assert await fresh_offset(fake, tmp_path) == 0  # not landed: not counted
            puts = part_object_puts(fake)
            fake.release.set()
            assert await task == PART
            assert part_object_puts(fake) == puts  # no commit after the part
            assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


def test_own_writes_stay_clean_and_read_nothing(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with unhashed(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await write(store, 0, PART)
            listed = fake.calls.get("list_parts", 0)
            puts = part_object_puts(fake)
            await write(store, PART, 2 * PART, held_here_last=True)
            # The run goes on: no commit at all, and the lock vouched: no reads either.
            assert metadata(fake)[META_PARTS] == "0" and metadata(fake)[META_RUN] == f"1:{PART}"
            assert part_object_puts(fake) == puts
            assert fake.calls.get("list_parts", 0) == listed
            assert await fresh_offset(fake, tmp_path) == 2 * PART
            await write(store, 2 * PART, len(DATA), held_here_last=True)  # completes it
            assert await content(store) == DATA

    run(scenario)


def test_a_leftover_above_the_counted_parts_means_ordinary_commits(tmp_path: Path) -> None:
    """A part from an earlier try under the next number, of the very size the next PATCH has."""
    fake = FakeS3()

    async def scenario() -> None:
        async with unhashed(fake, tmp_path) as store:
            await create(store, size=len(LONGER))
        upload = fake.upload_of("up")
        upload.parts[1] = (bytes(PART), '"leftover"')  # same size, other bytes
        async with unhashed(fake, tmp_path) as store:  # another server: reads, and looks above
            await write(store, 0, PART, data=LONGER)
            assert metadata(fake)[META_PARTS] == "1" and not names_a_part(fake)
            assert upload.parts[1][0] == LONGER[:PART]  # the part replaced the leftover first
            assert await fresh_offset(fake, tmp_path) == PART
            # What this process remembers stays unclean: it did not look above again.
            await write(store, PART, 2 * PART, held_here_last=True, data=LONGER)
            assert metadata(fake)[META_PARTS] == "2" and not names_a_part(fake)
        async with unhashed(fake, tmp_path) as store:  # a fresh read looks, and finds it clean
            await write(store, 2 * PART, 3 * PART, data=LONGER)
            assert metadata(fake)[META_PARTS] == "2" and metadata(fake)[META_RUN] == f"3:{PART}"
            await write(store, 3 * PART, len(LONGER), held_here_last=True, data=LONGER)
            assert await content(store) == LONGER

    run(scenario)


def test_a_pending_part_that_never_landed_means_an_ordinary_commit(tmp_path: Path) -> None:
    """It may still land (a try of a server that died): nothing is clean beside it."""
    fake = FakeS3()

    async def scenario() -> None:
        async with unhashed(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await write(store, 0, PART)
        fake.objects["up.part"].metadata.update({META_PARTS: "1", META_PENDING: f"2:{PART}:"})
        async with unhashed(fake, tmp_path) as store:
            await write(store, PART, 2 * PART)
            assert metadata(fake)[META_PARTS] == "2" and META_PENDING not in metadata(fake)
            assert await fresh_offset(fake, tmp_path) == 2 * PART

    run(scenario)


def test_after_a_failed_try_a_write_commits_after_its_part_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed try's part may still land (S3 had its whole body), though S3 lists nothing yet."""
    fake = FakeS3()

    async def scenario() -> None:
        async with unhashed(fake, tmp_path) as store:
            await create(store, size=len(LONGER))
            await write(store, 0, PART, data=LONGER)
            fake.fail("upload_part")
            with pytest.raises(StoreError):
                await write(store, PART, 2 * PART, held_here_last=True, data=LONGER)
            assert 2 not in fake.upload_of("up").parts  # nothing above the counted parts
            listed = fake.calls.get("list_parts", 0)
            await write(store, PART, 2 * PART, held_here_last=True, data=LONGER)
            assert fake.calls.get("list_parts", 0) > listed  # it forgot, read again, looked above
            assert metadata(fake)[META_PARTS] == "2" and not names_a_part(fake)
            # Once that while is over, a write that reads names a run again.
            monkeypatch.setattr(recall, "UNSETTLED_FOR", 0.0)
            await write(store, 2 * PART, 3 * PART, data=LONGER)
            assert metadata(fake)[META_RUN] == f"3:{PART}"
            await write(store, 3 * PART, len(LONGER), held_here_last=True, data=LONGER)
            assert await content(store) == LONGER

    run(scenario)


def test_a_reader_counts_an_unhashed_pending_part_only_at_its_size(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with unhashed(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await write(store, 0, PART)
        upload = fake.upload_of("up")
        data, etag = upload.parts[1]
        upload.parts[1] = (data[:-1], etag)
        assert await fresh_offset(fake, tmp_path) == 0
        upload.parts[1] = (data, etag)
        assert await fresh_offset(fake, tmp_path) == PART

    run(scenario)


def test_a_leftover_above_committed_parts_seen_by_another_server(tmp_path: Path) -> None:
    """The look above in a read that lists parts (count > 0, no list remembered). Right after a run
    only a part of another size can be a leftover: one of the run's size there is counted (only
    the client's bytes at their place go up while a run stands, see test_s3_runs)."""
    fake = FakeS3()

    async def scenario() -> None:
        async with unhashed(fake, tmp_path) as store:
            await create(store, size=len(LONGER))
            await write(store, 0, PART, data=LONGER)
        fake.upload_of("up").parts[2] = (bytes(PART + 1), '"leftover"')
        assert await fresh_offset(fake, tmp_path) == PART
        async with unhashed(fake, tmp_path) as store:  # nothing remembered: lists, and looks above 1
            await write(store, PART, 2 * PART, data=LONGER)
            assert metadata(fake)[META_PARTS] == "2" and not names_a_part(fake)
            assert await fresh_offset(fake, tmp_path) == 2 * PART

    run(scenario)


class LosesFirstPart(FakeS3):
    """The first UploadPart takes the whole body, then fails without storing it (a 500, a reset
    connection, or the server killed while S3 still read the body)."""

    lost = False

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body, size: int, md5: str | None) -> str:
        if not self.lost:
            self.lost = True
            async for _ in body:  # S3 takes the whole body...
                pass
            await asyncio.sleep(0.05)  # the pending commit is in S3 by now
            raise StoreError("injected: UploadPart failed after its body")
        return await super().upload_part(key, upload_id, number, body, size, md5)


@pytest.mark.parametrize("hashes", [False, True])
def test_a_refused_chunk_never_counts_under_the_name_of_a_failed_write(tmp_path: Path, hashes: bool) -> None:
    """The pending name outlives the write that failed; a checksummed retry of the same length
    streams its part under that number, lands it, and is refused (460): it must not count. Without
    an MD5 in the name, the next write takes the name away before any part goes up."""
    fake = LosesFirstPart()
    bad = bytes(reversed(DATA[:PART]))  # what a retry brings that does not match its checksum

    async def landed() -> bool:
        return 1 in fake.upload_of("up").parts

    async def scenario() -> None:
        async with unhashed(fake, tmp_path, hashes=hashes) as store:
            await create(store, size=len(DATA))
            with pytest.raises(StoreError):
                await store.write_chunk("up", 0, body(DATA[:PART]), length=PART)
            assert META_RUN in metadata(fake)  # the name outlives its write
            assert await fresh_offset(fake, tmp_path) == 0
        async with unhashed(fake, tmp_path, hashes=hashes) as store:  # the client retries, checksummed
            assert (await store.get_info_to_write("up")).offset == 0
            with pytest.raises(Boom):
                refused = body(bad, lambda: until(landed), Boom())
                await store.write_chunk("up", 0, refused, all_or_nothing=True, length=PART)
            assert await landed()
            assert (await store.get_info("up")).offset == 0
            assert await fresh_offset(fake, tmp_path) == 0

    run(scenario)
