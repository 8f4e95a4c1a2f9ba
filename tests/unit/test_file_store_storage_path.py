"""A pre-create hook's Storage.Path on the file store (tusd's filestore key): the data is at Path,
the upload is still found by its ID, and Path can never leave the directory or take a name in use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.base import InvalidStorage, UploadExists
from pytusd.stores.file import FileStore


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def started(root: Path) -> FileStore:
    store = FileStore(root)
    await store.start()
    return store


def test_data_lives_at_the_chosen_path_and_is_found_by_id(tmp_path: Path) -> None:
    root = tmp_path / "uploads"

    async def scenario() -> None:
        store = await started(root)
        info = await store.create(UploadInfo(id="abc", size=5, storage={"Path": "alice/report.pdf"}))
        assert info.storage["Path"] == str(root / "alice" / "report.pdf")
        assert info.storage["InfoPath"] == str(root / "abc.info")
        await store.write_chunk("abc", 0, chunks(b"hel", b"lo"))
        assert (root / "alice" / "report.pdf").read_bytes() == b"hello"
        again = await store.get_info("abc")  # a new instance: found by ID, from the .info
        assert again.offset == 5 and again.storage["Path"] == str(root / "alice" / "report.pdf")
        assert b"".join([b async for b in (await started(root)).read("abc")]) == b"hello"
        await store.terminate("abc")
        assert not (root / "alice" / "report.pdf").exists() and not (root / "abc").exists()

    run(scenario())


def test_an_absolute_path_inside_the_directory_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "uploads"

    async def scenario() -> None:
        store = await started(root)
        info = await store.create(UploadInfo(id="abc", size=1, storage={"Path": str(root / "x" / "y.bin")}))
        assert info.storage["Path"] == str(root / "x" / "y.bin") and (root / "x" / "y.bin").is_file()

    run(scenario())


@pytest.mark.parametrize(
    "path", ["../escape", "/etc/passwd", "a/../../b", "x.info", "a//b", ".pytusd-tmp/x", "a\nb", "x" * 300]
)
def test_paths_outside_or_aliasing_are_refused(tmp_path: Path, path: str) -> None:
    root = tmp_path / "uploads"

    async def scenario() -> None:
        store = await started(root)
        with pytest.raises(InvalidStorage) as caught:
            await store.create(UploadInfo(id="abc", size=1, storage={"Path": path}))
        assert caught.value.status == 400
        assert not (root / "abc").exists() and not (root / "abc.info").exists()

    run(scenario())
    assert not (tmp_path / "escape").exists()


def test_a_path_in_use_is_a_conflict_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "uploads"

    async def scenario() -> None:
        store = await started(root)
        await store.create(UploadInfo(id="taken", size=3))
        await store.write_chunk("taken", 0, chunks(b"old"))
        with pytest.raises(InvalidStorage) as caught:
            await store.create(UploadInfo(id="new", size=1, storage={"Path": "taken"}))
        assert caught.value.status == 409
        assert (root / "taken").read_bytes() == b"old"
        assert not (root / "new").exists() and not (root / "new.info").exists()
        # The other way round: an ID whose data name is another upload's Path.
        await store.create(UploadInfo(id="first", size=3, storage={"Path": "second"}))
        await store.write_chunk("first", 0, chunks(b"abc"))
        with pytest.raises(UploadExists):
            await store.create(UploadInfo(id="second", size=1))
        assert (root / "second").read_bytes() == b"abc"

    run(scenario())


def test_a_concatenated_final_keeps_its_path(tmp_path: Path) -> None:
    root = tmp_path / "uploads"

    async def scenario() -> None:
        store = await started(root)
        parts = []
        for name, data in (("p1", b"ab"), ("p2", b"cd")):
            parts.append(await store.create(UploadInfo(id=name, size=2, is_partial=True)))
            await store.write_chunk(name, 0, chunks(data))
        final = await store.create(UploadInfo(id="final", size=4, is_final=True, storage={"Path": "out/all.bin"}))
        await store.concatenate(final, [await store.get_info("p1"), await store.get_info("p2")])
        assert (root / "out" / "all.bin").read_bytes() == b"abcd" == (root / "final").read_bytes()

    run(scenario())
