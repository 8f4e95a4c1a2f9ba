"""S3Store.get_info_to_write: a PATCH that follows this process's own write reads nothing from S3.

Only when the lock says no other process held it since (``held_here_last``), and only what this
store's last completed write left: anything else that changes the upload makes it read again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytusd.info import UploadInfo
from pytusd.locks.file import FileLocker
from pytusd.locks.memory import REMEMBER, MemoryLocker
from pytusd.stores.base import StoreError
from pytusd.stores.s3 import S3Store, recall
from pytusd.stores.s3.client import Part
from pytusd.stores.s3.state import State
from tests.support.fake_s3 import FakeS3
from tests.support.inprocess import Server, header
from tests.unit.test_s3_writer import PART, body, content, create, opened, run

DATA = bytes(range(256)) * (3 * PART // 256)
READS = {"get_object", "head_object", "list_parts"}


def reads(fake: FakeS3, since: int) -> list[str]:
    return [operation for operation, _ in fake.log[since:] if operation in READS]


async def patch(store: S3Store, start: int, end: int, *, held_here_last: bool = True) -> int:
    """What the upload service does for a PATCH: look (under the lock), then write."""
    info = await store.get_info_to_write("up", held_here_last=held_here_last)
    assert info.offset == start
    return await store.write_chunk("up", start, body(DATA[start:end]), length=end - start)


def test_a_write_after_a_write_here_reads_nothing(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await patch(store, 0, PART)
            since = len(fake.log)
            await patch(store, PART, 2 * PART + 100)  # a part and a rest in the incomplete part
            await patch(store, 2 * PART + 100, 2 * PART + 200)  # the rest grows
            assert reads(fake, since) == []
            await patch(store, 2 * PART + 200, len(DATA))
            assert await content(store) == DATA

    run(scenario)


def test_without_the_locks_word_it_reads(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await patch(store, 0, PART)
            since = len(fake.log)
            await patch(store, PART, 2 * PART, held_here_last=False)
            assert "get_object" in reads(fake, since) and "head_object" in reads(fake, since)

    run(scenario)


def test_changes_other_than_writes_make_it_read_again(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=None)
            await patch(store, 0, PART)
            await store.declare_length("up", len(DATA))
            since = len(fake.log)
            info = await store.get_info_to_write("up", held_here_last=True)
            assert info.size == len(DATA) and info.offset == PART
            assert reads(fake, since)
            await store.write_chunk("up", PART, body(DATA[PART : 2 * PART]), length=PART)
            info.metadata["name"] = "x"
            info.offset = 2 * PART
            await store.update_info(info)
            since = len(fake.log)
            assert (await store.get_info_to_write("up", held_here_last=True)).metadata == {"name": "x"}
            assert reads(fake, since)

    run(scenario)


def test_a_failed_write_is_not_remembered(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, size=len(DATA))
            await patch(store, 0, PART)
            fake.fail("put_object", key="up.part")
            with pytest.raises(StoreError):  # the failed commit is reported
                await patch(store, PART, PART + 100)
            since = len(fake.log)
            assert (await store.get_info_to_write("up", held_here_last=True)).offset == PART
            assert reads(fake, since)

    run(scenario)


def test_another_store_on_the_bucket_is_seen_only_through_the_lock(tmp_path: Path) -> None:
    """Two processes: the lock tells the first that the second wrote (held_here_last False)."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path / "a") as first, opened(fake, tmp_path / "b") as second:
            await create(first, size=len(DATA))
            await patch(first, 0, PART)
            await patch(second, PART, 2 * PART, held_here_last=False)
            await patch(first, 2 * PART, len(DATA), held_here_last=False)
            assert await content(first) == DATA

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run(scenario)


def test_partial_and_completed_uploads_are_read(tmp_path: Path) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            await create(store, "up", size=len(DATA), is_partial=True)
            await patch(store, 0, PART)
            since = len(fake.log)
            await store.get_info_to_write("up", held_here_last=True)
            assert reads(fake, since)
            await create(store, "whole", size=PART)
            await store.write_chunk("whole", 0, body(DATA[:PART]), length=PART)
            since = len(fake.log)
            info = await store.get_info_to_write("whole", held_here_last=True)
            assert info.offset == PART and reads(fake, since)

    run(scenario)


def test_what_is_remembered_is_bounded() -> None:
    """By uploads and by the parts their states hold: a huge upload does not pin memory."""

    def state(upload_id: str, parts: int) -> State:
        return State(UploadInfo(id=upload_id, size=None), "mp", None, [Part(n, PART, "e") for n in range(parts)], None)

    memory = recall.Recall()
    for n in range(recall.MAX_WRITES + 5):
        memory.wrote(f"u{n}", state(f"u{n}", 1))
    assert memory.last_write("u0") is None and memory.last_write(f"u{recall.MAX_WRITES + 4}") is not None
    memory = recall.Recall()
    memory.wrote("big", state("big", recall.MAX_WRITTEN_PARTS - 10))
    memory.wrote("small", state("small", 5))
    assert memory.last_write("big") is not None
    memory.wrote("more", state("more", 20))
    assert memory.last_write("big") is None and memory.last_write("more") is not None
    memory.forget("small")
    memory.wrote("big", state("big", recall.MAX_WRITTEN_PARTS - 20))
    assert memory.last_write("big") is not None and memory.last_write("more") is not None


# -- through the upload service: the lock's word reaches the store -----------------------------------


@pytest.mark.parametrize(
    ("locker", "reads_again"),
    [("file", False), ("memory", True), ("memory-remembering", False)],
)
def test_a_patch_after_a_patch_reads_what_the_lock_allows(tmp_path: Path, locker: str, reads_again: bool) -> None:
    """The file locker knows no other process shares its directory; a plain memory locker cannot
    know whether other processes share the bucket, so its PATCHes read S3 each time."""
    fake = FakeS3()
    lockers = {
        "file": lambda: FileLocker(tmp_path / "locks"),
        "memory": MemoryLocker,
        "memory-remembering": lambda: MemoryLocker(remember=REMEMBER),
    }

    async def scenario() -> None:
        async with opened(fake, tmp_path) as store:
            server = Server(store, locker=lockers[locker]())
            path = await server.create(len(DATA))
            first = await server.patch(path, DATA[:PART], 0)
            assert first.status == 204, first.body
            since = len(fake.log)
            second = await server.patch(path, DATA[PART : 2 * PART], PART)
            assert second.status == 204 and header(second, "upload-offset") == str(2 * PART)
            assert bool(reads(fake, since)) is reads_again
            head = await server.call("HEAD", path)  # a HEAD always reads
            assert header(head, "upload-offset") == str(2 * PART)
            await server.service.locker.close()

    (tmp_path / "locks").mkdir()
    run(scenario)


def test_a_read_that_finds_another_write_forgets_the_remembered_one(tmp_path: Path) -> None:
    """P writes, Q writes, P only reads (a 409, a HEAD): P's next take is vouched for by the lock
    (P released it last), so what P remembers must not be its own old write."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path / "p") as p, opened(fake, tmp_path / "q") as q:
            await create(p, size=len(DATA))
            await patch(p, 0, PART)
            await patch(q, PART, 2 * PART, held_here_last=False)
            assert (await p.get_info_to_write("up", held_here_last=False)).offset == 2 * PART
            since = len(fake.log)
            assert (await p.get_info_to_write("up", held_here_last=True)).offset == 2 * PART
            assert reads(fake, since), "the remembered write of P answered"

    (tmp_path / "p").mkdir()
    (tmp_path / "q").mkdir()
    run(scenario)


def test_two_processes_taking_turns_through_the_service(tmp_path: Path) -> None:
    """The sequence of a lost answer: P writes, Q writes and exits, the client retries its
    PATCH through P (409 with Q's offset), then goes on from there through P."""
    fake = FakeS3()
    locks = tmp_path / "locks"

    async def scenario() -> None:
        async with opened(fake, tmp_path / "p") as p_store, opened(fake, tmp_path / "q") as q_store:
            p = Server(p_store, locker=FileLocker(locks))
            q = Server(q_store, locker=FileLocker(locks))
            path = await p.create(len(DATA))
            assert (await p.patch(path, DATA[:PART], 0)).status == 204
            assert (await q.patch(path, DATA[PART : 2 * PART], PART)).status == 204
            await q.service.locker.close()
            retried = await p.patch(path, DATA[PART : 2 * PART], PART)
            assert retried.status == 409 and header(retried, "upload-offset") == str(2 * PART)
            going_on = await p.patch(path, DATA[2 * PART :], 2 * PART)
            assert going_on.status == 204, going_on.body
            assert await content(p_store, path.rsplit("/", 1)[1]) == DATA
            await p.service.locker.close()

    for name in ("p", "q", "locks"):
        (tmp_path / name).mkdir()
    run(scenario)


def test_a_remembered_offset_never_answers_409_alone(tmp_path: Path) -> None:
    """A writer the lock cannot see (another lock directory: unsupported, but it must not wedge
    the upload): the PATCH at the true offset is checked against S3 before a 409."""
    fake = FakeS3()

    async def scenario() -> None:
        async with opened(fake, tmp_path / "p") as p_store, opened(fake, tmp_path / "q") as q_store:
            p = Server(p_store, locker=FileLocker(tmp_path / "p-locks"))
            q = Server(q_store, locker=FileLocker(tmp_path / "q-locks"))
            path = await p.create(len(DATA))
            assert (await p.patch(path, DATA[:PART], 0)).status == 204
            assert (await q.patch(path, DATA[PART : 2 * PART], PART)).status == 204
            going_on = await p.patch(path, DATA[2 * PART :], 2 * PART)
            assert going_on.status == 204, going_on.body
            assert await content(p_store, path.rsplit("/", 1)[1]) == DATA
            for server in (p, q):
                await server.service.locker.close()

    for name in ("p", "q", "p-locks", "q-locks"):
        (tmp_path / name).mkdir()
    run(scenario)
