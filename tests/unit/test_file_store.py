"""FileStore on a real directory: files, the tusd-compatible ``.info`` JSON, IDs, crash safety.

The part of the contract every store shares runs on FileStore too, in ``test_store_contract.py``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.locks.file import LOCK_DIR, FileLocker
from pytusd.stores.base import StoreError, UploadExists, UploadNotFound
from pytusd.stores.file import TEMP_DIR, FileStore


class Boom(Exception):
    pass


async def chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part
    if fail:
        raise Boom


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(scenario(), 30)

    return asyncio.run(bounded())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


async def started(root: Path, **kwargs: Any) -> FileStore:
    store = FileStore(root, **kwargs)
    await store.start()
    return store


def info_json(root: Path, upload_id: str) -> dict[str, Any]:
    return json.loads((root / f"{upload_id}.info").read_text())


# -- files on disk and the .info JSON ----------------------------------------------------------------


def test_an_upload_is_a_data_file_and_an_info_file(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=5))
        await store.create(UploadInfo(id="user1/deep/xyz", size=5))
        await store.write_chunk("abc", 0, chunks(b"hel", b"lo"))
        assert (root / "abc").read_bytes() == b"hello"
        assert (root / "abc.info").is_file()
        assert (root / "user1" / "deep" / "xyz").read_bytes() == b""
        assert (root / "user1" / "deep" / "xyz.info").is_file()
        await store.terminate("abc")
        assert not (root / "abc").exists() and not (root / "abc.info").exists()

    run(scenario)


def test_info_file_is_tusd_json(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="plain", size=11, metadata={"filename": "a b.txt", "empty": ""}))
        await store.create(UploadInfo(id="deferred", size=None, is_partial=True))
        await store.create(UploadInfo(id="final", size=None, is_final=True, partial_uploads=["plain", "deferred"]))

        plain = info_json(root, "plain")
        tusd_fields = {"ID", "Size", "SizeIsDeferred", "Offset", "MetaData", "IsPartial", "IsFinal",
                       "PartialUploads", "Storage"}  # fmt: skip
        assert tusd_fields <= plain.keys()
        assert plain["ID"] == "plain"
        assert plain["Size"] == 11 and plain["SizeIsDeferred"] is False
        assert plain["Offset"] == 0
        assert plain["MetaData"] == {"filename": "a b.txt", "empty": ""}
        assert plain["IsPartial"] is False and plain["IsFinal"] is False
        assert plain["PartialUploads"] is None  # tusd writes null for uploads that are not final
        assert plain["Storage"] == {
            "Type": "filestore",
            "Path": str(root / "plain"),
            "InfoPath": str(root / "plain.info"),
        }
        deferred = info_json(root, "deferred")
        assert deferred["Size"] == 0 and deferred["SizeIsDeferred"] is True and deferred["IsPartial"] is True
        final = info_json(root, "final")
        assert final["IsFinal"] is True and final["PartialUploads"] == ["plain", "deferred"]

    run(scenario)


def test_reads_an_upload_written_by_tusd(root: Path) -> None:
    """A tusd data directory works as it is: no fields of ours needed, offset from the data file."""
    root.mkdir()
    tusd_info = {
        "ID": "0123abcd",
        "Size": 11,
        "SizeIsDeferred": False,
        "Offset": 0,
        "MetaData": {"filename": "hello.txt", "filetype": "text/plain"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": {"InfoPath": "/srv/tusd/0123abcd.info", "Path": "/srv/tusd/0123abcd", "Type": "filestore"},
    }
    (root / "0123abcd.info").write_text(json.dumps(tusd_info))
    (root / "0123abcd").write_bytes(b"hello")

    async def scenario() -> None:
        store = await started(root)
        info = await store.get_info("0123abcd")
        assert (info.size, info.offset) == (11, 5)
        assert info.metadata == {"filename": "hello.txt", "filetype": "text/plain"}
        assert await store.write_chunk("0123abcd", 5, chunks(b" world")) == 6
        assert (await store.get_info("0123abcd")).is_complete
        assert [u async for u in store.list_uploads()] == ["0123abcd"]

    run(scenario)


def test_offset_is_the_size_of_the_data_file(root: Path) -> None:
    """Bytes a killed process wrote count; the Offset field in the JSON never does."""

    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=100))
        with open(root / "abc", "ab") as f:
            f.write(b"x" * 42)
        assert (await store.get_info("abc")).offset == 42
        info = await store.get_info("abc")
        info.metadata = {"k": "v"}
        await store.update_info(info)
        assert (await FileStore(root).get_info("abc")).offset == 42

    run(scenario)


def test_corrupt_info_file_is_a_store_error(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=3))
        (root / "abc.info").write_text('{"ID": "abc", "Size": ')
        with pytest.raises(StoreError):
            await FileStore(root).get_info("abc")

    run(scenario)


def test_stray_data_file_without_info_does_not_block_creation(root: Path) -> None:
    """A crash between the two steps of create leaves a data file alone; the ID is usable."""

    async def scenario() -> None:
        store = await started(root)
        (root / "abc").write_bytes(b"junk")
        with pytest.raises(UploadNotFound):
            await store.get_info("abc")
        await store.create(UploadInfo(id="abc", size=3))
        assert (await store.get_info("abc")).offset == 0

    run(scenario)


# -- the info file is replaced atomically ------------------------------------------------------------


def test_update_info_replaces_the_file_readers_never_see_half(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=3, metadata={"big": "a" * 100_000}))
        inode = (root / "abc.info").stat().st_ino
        first = await store.get_info("abc")
        await store.update_info(first)
        # Checked after one update: later renames free inodes the kernel may hand out again.
        assert (root / "abc.info").stat().st_ino != inode, "the info file was rewritten in place"
        stop = threading.Event()
        bad: list[str] = []

        def reader() -> None:
            while not stop.is_set():
                raw = (root / "abc.info").read_bytes()
                try:
                    json.loads(raw)
                except ValueError:
                    bad.append(f"{len(raw)} bytes")

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for i in range(200):
                info = await store.get_info("abc")
                info.metadata = {"big": "ab"[i % 2] * (50_000 + 997 * (i % 50))}
                await store.update_info(info)
                await asyncio.sleep(0)
        finally:
            stop.set()
            thread.join()
        assert bad == [], f"a reader saw a partly written info file {len(bad)} times"
        assert list((root / TEMP_DIR).iterdir()) == []

    run(scenario)


def test_failed_info_update_leaves_the_old_info(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=3, metadata={"v": "old"}))
        info = await store.get_info("abc")
        info.metadata = {"v": "new"}

        def disk_full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", disk_full)
            with pytest.raises(OSError):
                await store.update_info(info)
        assert info_json(root, "abc")["MetaData"] == {"v": "old"}
        assert (await FileStore(root).get_info("abc")).metadata == {"v": "old"}

    run(scenario)


@pytest.mark.parametrize("failing", ["info", "data"])
def test_a_creation_on_a_full_disk_leaves_nothing(root: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """ENOSPC while writing the info file, or while creating the data file: the creation fails
    (the handler answers 507) and no empty info file stays to read as a corrupt upload later."""

    async def scenario() -> None:
        store = await started(root)
        before = sorted(p.name for p in root.iterdir())
        real_open = os.open

        def disk_full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def data_file_full(path: str, flags: int, *args: Any) -> int:
            if not path.endswith(".info") and flags & os.O_CREAT:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_open(path, flags, *args)

        with monkeypatch.context() as patch:
            if failing == "info":
                patch.setattr("pytusd.stores.file.write_all", disk_full)
            else:
                patch.setattr(os, "open", data_file_full)
            with pytest.raises(OSError) as raised:
                await store.create(UploadInfo(id="full", size=3))
        assert raised.value.errno == errno.ENOSPC
        assert sorted(p.name for p in root.iterdir()) == before
        with pytest.raises(UploadNotFound):
            await store.get_info("full")
        await store.create(UploadInfo(id="full", size=3))  # once there is room, the ID is free
        assert (await store.get_info("full")).size == 3

    run(scenario)


def test_other_workers_see_info_updates(root: Path) -> None:
    """Two stores on one directory (two worker processes): a cached info never hides an update."""

    async def scenario() -> None:
        reader, writer = await started(root), await started(root)
        await writer.create(UploadInfo(id="abc", size=3, metadata={"v": "000000"}))
        for i in range(300):
            assert (await reader.get_info("abc")).metadata["v"] in (f"{i - 1:06d}b", "000000")
            info = await writer.get_info("abc")
            for suffix in "ab":  # same size twice in a row: only the inode tells them apart
                info.metadata = {"v": f"{i:06d}{suffix}"}
                await writer.update_info(info)
            assert (await reader.get_info("abc")).metadata == {"v": f"{i:06d}b"}

    run(scenario)


# -- staged (all-or-nothing) chunks and start() --------------------------------------------------


def test_all_or_nothing_leaves_no_staged_files(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=10))
        with pytest.raises(Boom):
            await store.write_chunk("abc", 0, chunks(b"12345", fail=True), all_or_nothing=True)
        assert (root / "abc").read_bytes() == b""
        assert await store.write_chunk("abc", 0, chunks(b"12345"), all_or_nothing=True) == 5
        assert (root / "abc").read_bytes() == b"12345"
        assert list((root / TEMP_DIR).iterdir()) == []

    run(scenario)


def test_start_clears_staged_files_of_a_killed_process(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=10))
        await store.write_chunk("abc", 0, chunks(b"12345"))
        for name in ("deadbeef.tmp", "other.tmp"):
            (root / TEMP_DIR / name).write_bytes(b"half a chunk")
        await FileStore(root).start()
        assert list((root / TEMP_DIR).iterdir()) == []
        assert (root / "abc").read_bytes() == b"12345"
        assert (await store.get_info("abc")).offset == 5

    run(scenario)


def test_start_creates_the_directory(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await started(tmp_path / "a" / "b")
        await store.create(UploadInfo(id="x", size=1))
        assert (tmp_path / "a" / "b" / "x").exists()

    run(scenario)


def test_staged_chunk_survives_another_worker_starting(root: Path) -> None:
    """A worker (re)started by uvicorn runs start() while another worker is staging a chunk."""

    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="abc", size=10))
        halfway = asyncio.Event()
        go_on = asyncio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield b"12345"
            halfway.set()
            await go_on.wait()
            yield b"67890"

        writing = asyncio.create_task(store.write_chunk("abc", 0, source(), all_or_nothing=True))
        await halfway.wait()
        await FileStore(root).start()
        go_on.set()
        assert await writing == 10
        assert (root / "abc").read_bytes() == b"1234567890"

    run(scenario)


# -- IDs ------------------------------------------------------------------------------------------

ESCAPING_IDS = ["..", "../x", "../../etc/passwd", "a/../../x", "a/../b", "/etc/passwd", "/abs", "./x", "a//b",
                "a/", "", "x\x00y", "a\\..\\b", "~/../x"]  # fmt: skip
RESERVED_IDS = ["x.info", "x.lock", "x.stop", "x.tmp", "x.part", "a/x.info", TEMP_DIR, f"{TEMP_DIR}/x"]


@pytest.mark.parametrize("bad_id", ESCAPING_IDS + RESERVED_IDS)
def test_ids_that_could_escape_or_clash_are_refused(tmp_path: Path, bad_id: str) -> None:
    root = tmp_path / "inner" / "uploads"

    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="x", size=3))
        await store.create(UploadInfo(id="a/x", size=3))
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        with pytest.raises(UploadNotFound):
            await store.create(UploadInfo(id=bad_id, size=3))
        with pytest.raises(UploadNotFound):
            await store.get_info(bad_id)
        with pytest.raises(UploadNotFound):
            await store.write_chunk(bad_id, 0, chunks(b"abc"))
        with pytest.raises(UploadNotFound):
            await store.write_chunk(bad_id, 0, chunks(b"abc"), all_or_nothing=True)
        with pytest.raises(UploadNotFound):
            await store.update_info(UploadInfo(id=bad_id, size=3))
        with pytest.raises(UploadNotFound):
            await store.terminate(bad_id)
        with pytest.raises(UploadNotFound):
            _ = [b async for b in store.read(bad_id)]
        after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        assert after == before, "a refused ID changed files"
        assert (await store.get_info("x")).size == 3

    run(scenario)


@pytest.mark.parametrize("bad_id", [LOCK_DIR, "x.info/y"])
def test_ids_that_collide_with_the_servers_own_files_are_refused(root: Path, bad_id: str) -> None:
    """The server keeps its locks beside the uploads (``FileLocker(upload_dir)`` in the CLI), and a
    directory segment ending in ``.info`` takes the name of another upload's info file. An ID chosen
    by a pre-create hook can be anything valid, so the store must refuse these like ``.pytusd-tmp``.
    """

    async def scenario() -> list[str]:
        store = await started(root)
        problems = []
        try:
            await store.create(UploadInfo(id=bad_id, size=3))
            problems.append(f"the store accepted the upload ID {bad_id!r}")
        except (UploadNotFound, UploadExists, OSError):
            pass
        locker = FileLocker(root)
        try:
            lock = await locker.acquire("x", lambda: None, 0.0)
            await lock.release()
        except OSError as exc:
            problems.append(f"locking any upload now fails: {exc!r}")
        await locker.close()
        try:
            await store.create(UploadInfo(id="x", size=3))
        except (UploadExists, OSError) as exc:
            problems.append(f"upload 'x' can no longer be created: {exc!r}")
        return problems

    problems = run(scenario)
    assert not problems, "; ".join(problems)


def test_list_uploads_skips_the_servers_own_files(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root)
        for uid in ("a", "b/c"):
            await store.create(UploadInfo(id=uid, size=3))
        locker = FileLocker(root)
        lock = await locker.acquire("a", lambda: None, 0.0)
        (root / TEMP_DIR / "staged.tmp").write_bytes(b"x")
        (root / TEMP_DIR / "z.info").write_bytes(b"{}")
        assert sorted([u async for u in store.list_uploads()]) == ["a", "b/c"]
        await lock.release()
        await locker.close()

    run(scenario)


# -- fsync mode ----------------------------------------------------------------------------------


def test_fsync_mode_does_the_same(root: Path) -> None:
    async def scenario() -> None:
        store = await started(root, fsync=True)
        await store.create(UploadInfo(id="p1", size=3, is_partial=True))
        await store.create(UploadInfo(id="p2", size=3, is_partial=True))
        await store.write_chunk("p1", 0, chunks(b"abc"))
        with pytest.raises(Boom):
            await store.write_chunk("p2", 0, chunks(b"d", fail=True))
        await store.write_chunk("p2", 1, chunks(b"ef"), all_or_nothing=True)
        final = await store.create(UploadInfo(id="f", size=None, is_final=True, partial_uploads=["p1", "p2"]))
        await store.concatenate(final, [await store.get_info("p1"), await store.get_info("p2")])
        final.size = 6
        await store.update_info(final)
        info = await store.get_info("f")
        assert (info.size, info.offset) == (6, 6)
        assert (root / "f").read_bytes() == b"abcdef"
        assert info_json(root, "f")["Size"] == 6

    run(scenario)
