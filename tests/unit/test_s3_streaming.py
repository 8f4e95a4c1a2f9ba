"""The S3 part writer when the body's length is known: parts stream while the body arrives.

Like tests/unit/test_s3_writer.py, these look at the in-memory bucket (tests/support/fake_s3.py)
and at what a fresh store on it computes. The same paths run against Swift in
tests/integration/test_s3_store.py and, through the server, in tests/integration/test_s3_server.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pytusd.stores.base import DirectSource
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3 import spool as spool_module
from tests.support.fake_s3 import FakeS3
from tests.unit.test_s3_writer import (
    DATA,
    PART,
    Boom,
    body,
    content,
    create,
    fresh_offset,
    incomplete_part,
    opened,
    run,
    uploaded_parts,
)

MiB = 1024 * 1024


@pytest.fixture
def fake() -> FakeS3:
    return FakeS3()


def test_a_part_goes_up_while_its_body_arrives(fake: FakeS3, tmp_path: Path) -> None:
    """With the length known, the part's upload starts before the body has ended."""
    chunk = DATA[: PART + MiB]
    started_early: list[int] = []

    async def halfway() -> None:
        started_early.append(fake.calls.get("upload_part", 0))

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            source = body(chunk[: 2 * MiB], halfway, chunk[2 * MiB :])
            assert await store.write_chunk("up", 0, source, length=len(chunk)) == len(chunk)
        assert started_early == [1]
        assert uploaded_parts(fake) == {1: len(chunk)}  # one part, not a part and a small rest
        assert incomplete_part(fake) == (1, 0)
        assert await fresh_offset(fake, tmp_path) == len(chunk)

    run(scenario)


def test_every_request_of_a_part_or_more_is_a_part_and_nothing_is_sent_twice(fake: FakeS3, tmp_path: Path) -> None:
    """8 MiB PATCHes (the benchmark's chunked case) each become one part: one upload each, one
    commit for all of them (the run the first names), no incomplete part uploaded again and again."""
    step = PART + 3 * MiB

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            offset = 0
            while offset < len(DATA):
                piece = DATA[offset : offset + step]
                # As the upload service writes: the lock says this process wrote last.
                assert (await store.get_info_to_write("up", held_here_last=offset > 0)).offset == offset
                assert await store.write_chunk("up", offset, body(piece), length=len(piece)) == len(piece)
                offset += len(piece)
            assert await content(store) == DATA
        sizes = [len(DATA[o : o + step]) for o in range(0, len(DATA), step)]
        assert len(sizes) == 3 and fake.calls["upload_part"] == len(sizes)
        # The info object, the run's commit, its end before the last part, and the completion marker.
        assert fake.calls["put_object"] == 1 + 1 + 1 + 1
        # Only the first PATCH's read looks above the parts; the store remembers its own writes.
        assert fake.calls.get("list_parts", 0) == 1

    run(scenario)


@pytest.mark.parametrize("arrived", [PART + MiB, 3 * MiB])
def test_a_body_that_ends_early_keeps_what_arrived(fake: FakeS3, tmp_path: Path, arrived: int) -> None:
    """The part that was streaming is taken back; what arrived goes up as a part (at least the
    minimum) or stays as the incomplete part."""

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            with pytest.raises(Boom):
                await store.write_chunk("up", 0, body(DATA[:arrived], Boom()), length=2 * PART)
            assert (await store.get_info("up")).offset == arrived
            assert len(os.listdir(store._temp_dir)) <= 1  # at most the cached incomplete part
            rest = DATA[arrived:]
            assert await store.write_chunk("up", arrived, body(rest), length=len(rest)) == len(rest)
            assert await content(store) == DATA
        assert await fresh_offset(fake, tmp_path) == len(DATA)

    run(scenario)


def test_content_hashes_go_along_when_they_can_and_etags_are_checked_when_not(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            fake.damage_unverified_parts = 1
            chunk = DATA[: PART + MiB]
            await store.write_chunk("up", 0, body(chunk), length=len(chunk))
            # Streamed without Content-MD5; its ETag did not match: sent again, with Content-MD5.
            parts = [md5 for op, md5 in fake.digests if op == "upload_part"]
            assert len(parts) == 2 and parts[0] is None and parts[1] is not None
            assert fake.upload_of("up").parts[1][0] == chunk
            # Without a length, a part goes up once full, with its Content-MD5; commits carry theirs.
            mark = len(fake.digests)
            await store.write_chunk("up", len(chunk), body(DATA[len(chunk) : len(chunk) + PART + 10]))
            assert fake.digests[mark:] and all(md5 is not None for _, md5 in fake.digests[mark:])

    run(scenario)


def test_without_content_hashes_nothing_is_hashed(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        store = S3Store("bucket", client=fake, part_size=PART, temp_dir=str(tmp_path), content_hashes=False)
        await store.start()
        try:
            await create(store)
            await store.write_chunk("up", 0, body(DATA[:100]))
            await store.write_chunk("up", 100, body(DATA[100 : 2 * PART]))
            rest = DATA[2 * PART :]
            await store.write_chunk("up", 2 * PART, body(rest), length=len(rest))
            assert await content(store) == DATA
        finally:
            await store.close()
        sent = [md5 for op, md5 in fake.digests if op == "upload_part"]
        assert sent and all(md5 is None for md5 in sent)

    run(scenario)


def test_a_commit_by_someone_else_is_listed_once(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as first, opened(fake, tmp_path) as second:
            await create(first)
            # A part and an incomplete part (a run of parts is listed on every read: test_s3_runs).
            await first.write_chunk("up", 0, body(DATA[: PART + MiB]))
            before = fake.calls.get("list_parts", 0)
            assert (await second.get_info("up")).offset == PART + MiB
            assert (await second.get_info("up")).offset == PART + MiB
            assert fake.calls.get("list_parts", 0) == before + 1
            # The second writes; the first sees another commit and lists again, once.
            await second.write_chunk("up", PART + MiB, body(DATA[PART + MiB : PART + 2 * MiB]), length=MiB)
            before = fake.calls.get("list_parts", 0)
            assert (await first.get_info("up")).offset == PART + 2 * MiB
            assert (await first.get_info("up")).offset == PART + 2 * MiB
            assert fake.calls["list_parts"] == before + 1

    run(scenario)


# -- fewer S3 requests per PATCH -------------------------------------------------------------------


def _reads(fake: FakeS3, since: int) -> list[tuple[str, str | None]]:
    return [entry for entry in fake.log[since:] if entry[0] in ("get_object", "head_object", "list_parts")]


def test_a_write_right_after_get_info_reads_nothing_again(fake: FakeS3, tmp_path: Path) -> None:
    """The handler reads the upload under its lock and then writes: the write uses that read."""

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            chunk = DATA[: PART + 7]
            mark = len(fake.log)
            await store.write_chunk("up", 0, body(chunk), length=len(chunk))  # creation hands it over too
            assert _reads(fake, mark) == []
            info = await store.get_info("up")
            mark = len(fake.log)
            rest = DATA[info.offset : info.offset + PART]
            await store.write_chunk("up", info.offset, body(rest), length=len(rest))
            assert _reads(fake, mark) == []
        assert await fresh_offset(fake, tmp_path) == 2 * PART + 7

    run(scenario)


def test_a_read_that_no_longer_fits_is_not_handed_over(fake: FakeS3, tmp_path: Path) -> None:
    """A remembered state at another offset (someone wrote since) is read again, not trusted."""

    async def scenario() -> None:
        async with opened(fake, tmp_path) as first, opened(fake, tmp_path) as second:
            await create(first)
            assert (await first.get_info("up")).offset == 0
            await second.write_chunk("up", 0, body(DATA[:100]))
            mark = len(fake.log)
            await first.write_chunk("up", 100, body(DATA[100:200]), length=100)
            assert _reads(fake, mark)  # read again
            assert (await second.get_info("up")).offset == 200
            assert fake.objects["up.part"].data == DATA[:200]

    run(scenario)


def test_reads_of_an_upload_in_progress_skip_its_object_yet_see_it_complete(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as store, opened(fake, tmp_path) as other:
            await create(store)
            await store.write_chunk("up", 0, body(DATA[: PART + 1]), length=PART + 1)
            mark = len(fake.log)
            assert (await other.get_info("up")).offset == PART + 1
            assert ("head_object", "up") not in fake.log[mark:]
            rest = DATA[PART + 1 :]
            await store.write_chunk("up", PART + 1, body(rest), length=len(rest))
            info = await other.get_info("up")
            assert info.offset == len(DATA) and info.is_complete
            assert await content(other) == DATA

    run(scenario)


# -- bodies the serving layer moves into the spools itself (splice) -------------------------------


class Spliced(DirectSource):
    """A body that writes itself into descriptors, at most ``limit`` bytes a call, as pytusd's
    serving layer does with splice(2); ``stop_at`` ends it early (the client left)."""

    def __init__(self, data: bytes, *, step: int = 256 * 1024, stop_at: int | None = None) -> None:
        self.data, self.step, self.position = data, step, 0
        self.end = len(data) if stop_at is None else stop_at
        self.calls: list[int | None] = []

    def __aiter__(self) -> AsyncIterator[bytes]:
        raise AssertionError("a spliced body is not iterated")

    async def write_into(self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None) -> int:
        self.calls.append(limit)
        stop = self.end if limit is None else min(self.end, self.position + limit)
        written = 0
        while self.position < stop:
            count = os.write(fd, self.data[self.position : min(stop, self.position + self.step)])
            self.position += count
            written += count
            if moved is not None:
                moved(count)
            await asyncio.sleep(0)
        return written


@pytest.mark.parametrize("hashed", [True, False])
def test_a_spliced_body_fills_the_pieces_part_by_part(fake: FakeS3, tmp_path: Path, hashed: bool) -> None:
    async def scenario() -> None:
        store = S3Store("bucket", client=fake, part_size=PART, temp_dir=str(tmp_path), content_hashes=hashed)
        await store.start()
        try:
            await create(store)
            first = DATA[:100]
            await store.write_chunk("up", 0, Spliced(first), length=len(first))
            rest = DATA[100:]
            source = Spliced(rest)
            assert await store.write_chunk("up", 100, source, length=len(rest)) == len(rest)
            assert await content(store) == DATA
            # One call per piece (the limits), never the whole body at once.
            assert None not in source.calls and len(source.calls) >= 4
            assert os.listdir(store._temp_dir) == []
        finally:
            await store.close()
        # 3 parts of PART and one of the rest; with hashes, the MD5 computed from the file matched
        # every streamed part's ETag: no part was sent twice.
        assert fake.calls["upload_part"] == 4

    run(scenario)


def test_a_spliced_body_cut_short_keeps_what_arrived(fake: FakeS3, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            arrived = PART + MiB + 5
            source = Spliced(DATA[: 3 * PART], stop_at=arrived)
            assert await store.write_chunk("up", 0, source, length=3 * PART) == arrived
            assert (await store.get_info("up")).offset == arrived
            rest = DATA[arrived:]
            await store.write_chunk("up", arrived, Spliced(rest), length=len(rest))
            assert await content(store) == DATA
        assert await fresh_offset(fake, tmp_path) == len(DATA)

    run(scenario)


def test_a_stalled_spliced_body_shows_what_arrived(fake: FakeS3, tmp_path: Path) -> None:
    """Bytes moved by one long splice call count as they land: a stalled client's 300 kB are
    committed while the call still waits for more."""

    class Stalling(Spliced):
        def __init__(self, data: bytes, stall_at: int) -> None:
            super().__init__(data)
            self.stall_at, self.go = stall_at, asyncio.Event()

        async def write_into(
            self, fd: int, limit: int | None = None, moved: Callable[[int], None] | None = None
        ) -> int:
            first = await super().write_into(fd, self.stall_at, moved)
            await self.go.wait()
            return first + await super().write_into(fd, None if limit is None else limit - first, moved)

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=1_000_000)
            source = Stalling(DATA[:1_000_000], 300_000)
            task = asyncio.get_running_loop().create_task(store.write_chunk("up", 0, source, length=1_000_000))
            async with asyncio.timeout(10):
                while await fresh_offset(fake, tmp_path) != 300_000:  # noqa: ASYNC110 - polls the bucket
                    await asyncio.sleep(0.05)
            source.go.set()
            assert await task == 1_000_000
            assert await content(store) == DATA[:1_000_000]

    run(scenario)


def test_a_writer_waits_for_the_hashing_thread(fake: FakeS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks wait in memory until the hashing thread has them: beyond HASH_BACKLOG the body waits."""
    monkeypatch.setattr(spool_module, "HASH_BACKLOG", MiB)
    gate = threading.Event()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store)
            spool_module._hash_in_order(gate.wait)  # the hashing thread is busy until the gate opens
            try:
                task = asyncio.get_running_loop().create_task(store.write_chunk("up", 0, body(DATA[: 3 * MiB])))
                await asyncio.sleep(0.3)
                assert not task.done()  # it cannot finish: its chunks are not hashed
                assert spool_module._backlog <= 2 * MiB  # it stopped soon after the limit
            finally:
                gate.set()
            assert await task == 3 * MiB
            assert (await store.get_info("up")).offset == 3 * MiB

    run(scenario)
