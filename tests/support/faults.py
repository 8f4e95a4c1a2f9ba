"""Injected storage faults for unit tests: a disk that fills up after a number of bytes.

A real full file system needs root (or a user namespace: tests/integration/test_full_disk.py has
one); these patch ``os.write`` so the store under test sees what a full disk does.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytusd.stores.file import FileStore
from tests.support.inprocess import Server


def enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def disk_room(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``os.write`` on a disk with ``room[0]`` bytes left: it writes what fits, then fails with ENOSPC
    (as a real one does: a short write first). ``room[0] = -1``: as much room as needed."""
    room = [-1]
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if room[0] < 0:
            return real_write(fd, data)
        if room[0] == 0:
            raise enospc()
        written = real_write(fd, bytes(memoryview(data)[: room[0]]))
        room[0] -= written
        return written

    monkeypatch.setattr(os, "write", write)
    yield room


async def file_server(root: Path) -> Server:
    store = FileStore(root)
    await store.start()
    return Server(store)
