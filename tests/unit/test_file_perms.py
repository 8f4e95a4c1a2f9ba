"""--dir-perms/--file-perms at the store and locker level: every directory and file they create for
uploads gets the mode, less the umask (as tusd); nested IDs make nested directories."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pytusd.info import UploadInfo
from pytusd.locks.file import LOCK_DIR, FileLocker
from pytusd.stores.file import FileStore
from pytusd.stores.perms import makedirs, parse_perms


def umask() -> int:
    """The process umask, read without changing it (os.umask can only set it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc/self/status")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize(("dir_perms", "file_perms"), [(0o750, 0o640), (0o775, 0o664), (0o700, 0o600)])
def test_store_creates_with_the_modes(tmp_path: Path, dir_perms: int, file_perms: int) -> None:
    root = tmp_path / "missing" / "uploads"
    want_dir, want_file = dir_perms & ~umask(), file_perms & ~umask()

    async def scenario() -> None:
        store = FileStore(root, dir_perms=dir_perms, file_perms=file_perms)
        await store.start()
        await store.create(UploadInfo(id="user1/deep/abc", size=3, is_partial=True))
        await store.write_chunk("user1/deep/abc", 0, body(b"abc"))
        info = await store.get_info("user1/deep/abc")
        info.metadata = {"name": "x"}
        await store.update_info(info)  # rewritten through a temporary file
        await store.add_pending_final("user1/deep/abc", "final")
        await store.create(UploadInfo(id="final", size=3, is_final=True))
        await store.concatenate(UploadInfo(id="final", size=3), [info])  # renamed in from a temporary file

    asyncio.run(scenario())
    for directory in (root, tmp_path / "missing", root / "user1", root / "user1" / "deep"):
        assert mode(directory) == want_dir, directory
    for name in ("user1/deep/abc", "user1/deep/abc.info", "user1/deep/abc.finals", "final", "final.info"):
        assert mode(root / name) == want_file, name


def test_lock_files_and_directory(tmp_path: Path) -> None:
    want_dir, want_file = 0o710 & ~umask(), 0o620 & ~umask()

    async def scenario() -> None:
        locker = FileLocker(tmp_path, dir_perms=0o710, file_perms=0o620)
        lock = await locker.acquire("a/b", lambda: None, 5.0)
        try:
            files = list((tmp_path / LOCK_DIR).iterdir())
            assert files
            assert {mode(f) for f in files} == {want_file}
            assert mode(tmp_path / LOCK_DIR) == want_dir
        finally:
            await lock.release()
            await locker.close()

    asyncio.run(scenario())


def test_makedirs_on_a_file_fails_as_os_makedirs(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"")
    with pytest.raises(FileExistsError):
        makedirs(str(tmp_path / "x"), 0o755)
    with pytest.raises(NotADirectoryError):
        makedirs(str(tmp_path / "x" / "y" / "z"), 0o755)
    makedirs(str(tmp_path), 0o700)  # an existing directory is left as it is
    assert os.path.isdir(tmp_path)


@pytest.mark.parametrize(
    ("text", "value"), [("0775", 0o775), ("664", 0o664), ("0", 0), ("2775", 0o775), ("0o750", 0o750)]
)
def test_parse_perms(text: str, value: int) -> None:
    assert parse_perms(text, "dir-perms") == value


@pytest.mark.parametrize("text", ["", "rwx", "8", "17777", "-1"])
def test_parse_perms_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--dir-perms must be an octal mode"):
        parse_perms(text, "dir-perms")
