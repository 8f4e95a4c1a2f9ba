"""MemoryStore beside FileStore, for what the store contract suite does not cover.

MemoryStore exists for tests and examples; it must behave like the real store, or tests that use
it prove nothing. The contract every store shares is in ``test_store_contract.py`` (on S3 too);
FileStore-only behaviour (paths, the ``.info`` JSON, IDs that try to escape, crash safety) is in
``test_file_store.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.base import DataStore
from pytusd.stores.file import FileStore
from pytusd.stores.memory import MemoryStore

Scenario = Callable[[DataStore], Awaitable[Any]]


class Boom(Exception):
    """A source that fails, like a body whose checksum does not match or whose client vanished."""


async def chunks(parts: Iterable[bytes], fail_after: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part
    if fail_after:
        raise Boom


async def content(store: DataStore, upload_id: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([block async for block in store.read(upload_id, start, end)])


@pytest.fixture(params=["memory", "file"])
def store_run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], Any]:
    """Runs a scenario on a fresh, started store of the parametrized kind."""

    def run(scenario: Scenario) -> Any:
        async def main() -> Any:
            store: DataStore = MemoryStore() if request.param == "memory" else FileStore(tmp_path / "uploads")
            await store.start()
            try:
                return await asyncio.wait_for(scenario(store), 30)
            finally:
                await store.close()

        return asyncio.run(main())

    return run


def new(upload_id: str = "up", size: int | None = 10, **fields: Any) -> UploadInfo:
    return UploadInfo(id=upload_id, size=size, created_at=1_700_000_000.5, **fields)


# -- many chunks, read back in ranges (with an empty one: see BREACHES in test_store_contract.py) -----


def test_many_chunks_in_one_write(store_run: Callable[[Scenario], Any]) -> None:
    async def scenario(store: DataStore) -> None:
        parts = [bytes([i]) * (1000 + i) for i in range(200)]
        total = sum(map(len, parts))
        await store.create(new(size=total))
        assert await store.write_chunk("up", 0, chunks(parts)) == total
        assert await content(store, "up") == b"".join(parts)
        assert await content(store, "up", 995, 1005) == b"\x00" * 5 + b"\x01" * 5
        assert await content(store, "up", total - 3) == parts[-1][-3:]
        assert await content(store, "up", 5, 5) == b""

    store_run(scenario)


# -- MemoryStore only ----------------------------------------------------------------------------


def test_memory_store_create_keeps_its_own_copy() -> None:
    async def main() -> None:
        store = MemoryStore()
        info = new(metadata={"a": "1"})
        await store.create(info)
        info.metadata["a"] = "changed by the caller"
        assert (await store.get_info("up")).metadata == {"a": "1"}

    asyncio.run(main())
